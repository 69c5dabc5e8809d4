//! Parser throughput on one core: the protocols crate's HTTP/1.1 and HTTP/2 parsers fed an
//! in-memory corpus the way the agent feeds them, against bare `httparse` on the same HTTP/1.1
//! bytes. No kernel and no privileges involved.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use anyhow::bail;
use protocols::{Call, Direction, Limits, StreamParser, http1::Http1Parser, http2::Http2Parser};

use super::corpus::{self, Corpus};

/// Calls in each corpus: enough that one pass takes milliseconds, not microseconds.
const CALLS: usize = 10_000;

/// One contender's median round.
pub struct Throughput {
    pub name: &'static str,
    pub bytes_per_second: f64,
    pub calls_per_second: f64,
}

pub struct Results {
    pub http1_calls: usize,
    pub http1_bytes: usize,
    pub http2_bytes: usize,
    pub http1: Throughput,
    pub httparse: Throughput,
    pub http2: Throughput,
}

/// One pass of a contender over its corpus; returns the calls it found.
type Pass = fn(&Corpus, &[Vec<u8>; 2]) -> usize;

pub fn run(round: Duration, rounds: u32) -> anyhow::Result<Results> {
    let http1 = corpus::http1(CALLS);
    let http2 = corpus::http2(CALLS);
    let http1_streams = [
        http1.stream(Direction::Request),
        http1.stream(Direction::Response),
    ];
    let contenders: [(&'static str, &Corpus, Pass); 3] = [
        ("protocols::http1::Http1Parser", &http1, |corpus, _| {
            feed(Http1Parser::new(Limits::default(), false), corpus)
        }),
        (
            "httparse (heads only, bodies skipped by Content-Length)",
            &http1,
            |_, streams| bare_httparse(streams),
        ),
        ("protocols::http2::Http2Parser", &http2, |corpus, _| {
            feed(Http2Parser::new(Limits::default(), false), corpus)
        }),
    ];
    // A corpus the parsers misread would make every figure meaningless.
    for (name, corpus, pass) in &contenders {
        let found = pass(corpus, &http1_streams);
        if found != corpus.calls {
            bail!(
                "{name} found {found} calls in a corpus of {}: the corpus or the parser is wrong",
                corpus.calls
            );
        }
    }

    // Rounds interleave the contenders, so drift on the machine spreads over all of them.
    let mut samples: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        for (index, (_, corpus, pass)) in contenders.iter().enumerate() {
            samples[index].push(passes_per_second(round, || {
                black_box(pass(black_box(corpus), &http1_streams));
            }));
        }
    }
    let mut throughput = |index: usize| {
        let (name, corpus, _) = contenders[index];
        let passes = median(&mut samples[index]);
        Throughput {
            name,
            bytes_per_second: passes * corpus.bytes as f64,
            calls_per_second: passes * corpus.calls as f64,
        }
    };
    Ok(Results {
        http1_calls: http1.calls,
        http1_bytes: http1.bytes,
        http2_bytes: http2.bytes,
        http1: throughput(0),
        httparse: throughput(1),
        http2: throughput(2),
    })
}

/// Feeds a corpus to a fresh parser as the agent would (a new connection each pass, its calls
/// taken and dropped after every piece) and counts the complete calls.
fn feed(mut parser: impl StreamParser, corpus: &Corpus) -> usize {
    let mut calls: Vec<Call> = Vec::new();
    let mut complete = 0;
    let mut count = |calls: &mut Vec<Call>| {
        complete += calls
            .drain(..)
            .filter(|call| call.request.complete && call.response.complete)
            .count();
    };
    for (time_ns, (direction, bytes)) in (1_u64..).zip(&corpus.segments) {
        parser.data(*direction, bytes, time_ns, &mut calls);
        count(&mut calls);
    }
    parser.close(u64::MAX, &mut calls);
    count(&mut calls);
    complete
}

/// The least any HTTP/1.1 parser must do: parse each head with httparse, find Content-Length
/// among its headers and skip the body. Returns the request/response pairs found.
fn bare_httparse([requests, responses]: &[Vec<u8>; 2]) -> usize {
    fn content_length(headers: &[httparse::Header<'_>]) -> usize {
        headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("content-length"))
            .and_then(|header| std::str::from_utf8(header.value).ok())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }
    let mut found = [0, 0];
    let mut offset = 0;
    while offset < requests.len() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = request.parse(&requests[offset..]) else {
            break;
        };
        offset += head + content_length(request.headers);
        found[0] += 1;
    }
    offset = 0;
    while offset < responses.len() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(&responses[offset..]) else {
            break;
        };
        offset += head + content_length(response.headers);
        found[1] += 1;
    }
    found[0].min(found[1])
}

/// Repeats `pass` for at least `round` and returns how many passes a second it managed.
fn passes_per_second(round: Duration, mut pass: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut passes = 0_u64;
    while started.elapsed() < round {
        pass();
        passes += 1;
    }
    passes as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
