//! Output as `--output` asks: a table for people, JSON lines or YAML documents for scripts.

use std::io::{self, Write};

use crate::Output;

/// Writes `values` as JSON lines or YAML documents, or calls `table` for a table.
pub fn records(
    out: &mut impl Write,
    output: Output,
    values: impl IntoIterator<Item = serde_json::Value>,
    table: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    match output {
        Output::Table => table(out),
        Output::Json | Output::Yaml => values
            .into_iter()
            .try_for_each(|value| record(out, output, &value)),
    }
}

/// One record as JSON (a line) or YAML (a document); tables print their own rows.
pub fn record(out: &mut impl Write, output: Output, value: &serde_json::Value) -> io::Result<()> {
    match output {
        Output::Yaml => {
            let text = serde_yaml::to_string(value).map_err(io::Error::other)?;
            write!(out, "---\n{text}")
        }
        Output::Json | Output::Table => writeln!(out, "{value}"),
    }
}

/// Columns as wide as their widest cell (at most 60 characters), two spaces apart.
pub fn aligned(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count()).min(60);
        }
    }
    let headers: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    writeln!(out, "{}", fixed_line(&headers, &widths))?;
    for row in rows {
        writeln!(out, "{}", fixed_line(row, &widths))?;
    }
    Ok(())
}

/// Cells cut or padded to `widths`, two spaces apart (follow mode fixes the widths, since it
/// prints rows before knowing the widest).
pub fn fixed_line(cells: &[String], widths: &[usize]) -> String {
    cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| {
            let cell: String = cell.chars().take(*width).collect();
            format!("{cell:<width$}")
        })
        .collect::<Vec<_>>()
        .join("  ")
        .trim_end()
        .to_owned()
}

/// Pages of a list query until `limit` records or the last page: `fetch(cursor, page_size)`
/// returns a page and the next cursor (empty after the last).
pub async fn pages<T, F, Fut>(limit: u32, mut fetch: F) -> Result<Vec<T>, tonic::Status>
where
    F: FnMut(String, u32) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut records = Vec::new();
    let mut cursor = String::new();
    while records.len() < limit as usize {
        let page_size = (limit as usize - records.len()).min(1000) as u32;
        let (page, next) = fetch(cursor, page_size).await?;
        records.extend(page);
        if next.is_empty() {
            break;
        }
        cursor = next;
    }
    Ok(records)
}

/// How follow mode prints one kind of record: fixed-width table cells, or the record as JSON.
pub struct Follow<'a, T> {
    pub headers: &'a [&'a str],
    pub widths: &'a [usize],
    pub cells: fn(&T) -> Vec<String>,
    pub json: fn(&T) -> serde_json::Value,
}

impl<T> Follow<'_, T> {
    /// Prints `backlog` (newest first, as lists return it) oldest first, then every record
    /// `updates` brings, until the stream ends or the reader goes away.
    pub async fn run(
        &self,
        output: Output,
        backlog: &[T],
        mut updates: tonic::Streaming<T>,
    ) -> Result<(), crate::Failure> {
        let print = |item: &T| -> io::Result<()> {
            let mut out = io::stdout().lock();
            match output {
                Output::Table => {
                    writeln!(out, "{}", fixed_line(&(self.cells)(item), self.widths))
                }
                Output::Json | Output::Yaml => record(&mut out, output, &(self.json)(item)),
            }?;
            out.flush()
        };
        let failed = |error: io::Error| crate::Failure::Other(error.into());
        if output == Output::Table {
            let headers: Vec<String> = self
                .headers
                .iter()
                .map(|header| (*header).to_owned())
                .collect();
            println!("{}", fixed_line(&headers, self.widths));
        }
        for item in backlog.iter().rev() {
            print(item).map_err(failed)?;
        }
        while let Some(item) = updates.message().await? {
            print(&item).map_err(failed)?;
        }
        Ok(())
    }
}
