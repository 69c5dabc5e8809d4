//! Rust peers for the capture tests: an `h2` server and client speaking HTTP/2 with prior
//! knowledge, and a `tonic` gRPC server and client of the `moat.rust.Echo` service
//! (proto/echo.proto). Servers run until killed; clients print one line per call.

use std::{net::SocketAddr, pin::Pin};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use h2::{RecvStream, SendStream};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinSet,
};
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming, transport::Server};

mod echo {
    tonic::include_proto!("moat.rust");
}

use echo::{
    Number, Text,
    echo_client::EchoClient,
    echo_server::{Echo, EchoServer},
};

#[derive(Parser)]
#[command(about = "Rust HTTP/2 and gRPC peers for Moat's capture tests")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves HTTP/2 (prior knowledge): 200 with `METHOD PATH BODY-BYTES\n` for each request,
    /// 404 for /missing, and N bytes for /bytes/N.
    H2Serve { address: SocketAddr },
    /// Makes every request at once on one connection and prints `PATH STATUS BODY-BYTES`.
    /// Paths starting with /post are POSTs of as many bytes as the number ending the path
    /// (/post/70000), 1000 when there is none.
    H2Get {
        address: SocketAddr,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Serves the Echo service.
    GrpcServe { address: SocketAddr },
    /// Calls each Echo method (Say twice, once failing) and prints what came back.
    GrpcCall { address: SocketAddr },
    /// HTTP/1.1 GETs over TLS with rustls (not OpenSSL), one connection each, trusting the CA
    /// in the PEM file `ca`; prints the status line of each response.
    TlsGet {
        address: SocketAddr,
        /// The name the server's certificate carries (an IP address is fine).
        server_name: String,
        ca: std::path::PathBuf,
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::H2Serve { address } => h2_serve(address).await,
        Command::H2Get { address, paths } => h2_get(address, paths).await,
        Command::GrpcServe { address } => Server::builder()
            .add_service(EchoServer::new(EchoService))
            .serve(address)
            .await
            .context("serve gRPC"),
        Command::GrpcCall { address } => grpc_call(address).await,
        Command::TlsGet {
            address,
            server_name,
            ca,
            paths,
        } => tls_get(address, server_name, &ca, paths).await,
    }
}

async fn tls_get(
    address: SocketAddr,
    server_name: String,
    ca: &std::path::Path,
    paths: Vec<String>,
) -> anyhow::Result<()> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).context("read the CA file")? {
        roots
            .add(certificate.context("parse the CA file")?)
            .context("trust the CA")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::try_from(server_name.clone()).context("server name")?;
    for path in paths {
        let socket = TcpStream::connect(address)
            .await
            .with_context(|| format!("connect to {address}"))?;
        let mut stream = connector
            .connect(name.clone(), socket)
            .await
            .context("TLS handshake")?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.context("send")?;
        let mut response = Vec::new();
        // A server may close without close_notify; what arrived before counts.
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        println!("{path} {}", text.lines().next().unwrap_or("(no response)"));
    }
    Ok(())
}

async fn h2_serve(address: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("listen on {address}"))?;
    loop {
        let (socket, peer) = listener.accept().await.context("accept")?;
        tokio::spawn(async move {
            if let Err(error) = h2_connection(socket).await {
                eprintln!("connection from {peer}: {error}");
            }
        });
    }
}

/// Answers each stream of one connection in a task of its own, so responses interleave.
async fn h2_connection(socket: TcpStream) -> Result<(), h2::Error> {
    let mut connection = h2::server::handshake(socket).await?;
    while let Some(stream) = connection.accept().await {
        let (request, respond) = stream?;
        tokio::spawn(async move {
            if let Err(error) = h2_answer(request, respond).await {
                eprintln!("stream: {error}");
            }
        });
    }
    Ok(())
}

async fn h2_answer(
    request: http::Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> Result<(), h2::Error> {
    let (head, body) = request.into_parts();
    let received = read_body(body).await?;
    let path = head.uri.path();
    let (status, body) = if path == "/missing" {
        (404, Bytes::from_static(b"not found\n"))
    } else if let Some(count) = path.strip_prefix("/bytes/") {
        (200, Bytes::from(vec![b'x'; count.parse().unwrap_or(0)]))
    } else {
        let answer = format!("{} {path} {received}\n", head.method);
        (200, Bytes::from(answer))
    };
    let response = http::Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(())
        .expect("a valid response head");
    let mut stream = respond.send_response(response, false)?;
    send_body(&mut stream, body).await
}

/// Reads a body to its end, giving its bytes back to flow control; returns how many there were.
async fn read_body(mut body: RecvStream) -> Result<usize, h2::Error> {
    let mut length = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        length += chunk.len();
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(length)
}

/// Sends `body` and ends the stream, as fast as the peer's flow-control window allows.
async fn send_body(stream: &mut SendStream<Bytes>, mut body: Bytes) -> Result<(), h2::Error> {
    if body.is_empty() {
        return stream.send_data(body, true);
    }
    while !body.is_empty() {
        stream.reserve_capacity(body.len());
        let Some(granted) = std::future::poll_fn(|context| stream.poll_capacity(context)).await
        else {
            return Err(h2::Reason::STREAM_CLOSED.into());
        };
        let chunk = body.split_to(granted?.min(body.len()));
        if !chunk.is_empty() {
            stream.send_data(chunk, body.is_empty())?;
        }
    }
    Ok(())
}

async fn h2_get(address: SocketAddr, paths: Vec<String>) -> anyhow::Result<()> {
    let socket = TcpStream::connect(address)
        .await
        .with_context(|| format!("connect to {address}"))?;
    let (client, connection) = h2::client::handshake(socket)
        .await
        .context("HTTP/2 handshake")?;
    let connection = tokio::spawn(connection);
    let mut requests = JoinSet::new();
    for path in paths {
        let client = client.clone();
        requests.spawn(async move {
            let outcome = h2_request(client, address, &path).await;
            (path, outcome)
        });
    }
    drop(client);
    let mut lines = Vec::new();
    while let Some(joined) = requests.join_next().await {
        let (path, outcome) = joined.context("request task")?;
        let (status, length) = outcome.with_context(|| format!("request {path}"))?;
        lines.push(format!("{path} {status} {length}"));
    }
    // Every handle and stream is gone, so the connection ends (GOAWAY, then close).
    connection
        .await
        .context("connection task")?
        .context("HTTP/2 connection")?;
    lines.sort();
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// One request; returns the response's status and body length.
async fn h2_request(
    client: h2::client::SendRequest<Bytes>,
    address: SocketAddr,
    path: &str,
) -> Result<(u16, usize), h2::Error> {
    let body = path.strip_prefix("/post").map(|rest| {
        let length = rest.rsplit('/').next().and_then(|n| n.parse().ok());
        Bytes::from(vec![b'p'; length.unwrap_or(1000)])
    });
    let method = if body.is_some() { "POST" } else { "GET" };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .body(())
        .expect("a valid request head");
    let mut client = client.ready().await?;
    let (response, mut stream) = client.send_request(request, body.is_none())?;
    if let Some(body) = body {
        send_body(&mut stream, body).await?;
    }
    let response = response.await?;
    let status = response.status().as_u16();
    let length = read_body(response.into_body()).await?;
    Ok((status, length))
}

struct EchoService;

type TextStream = Pin<Box<dyn Stream<Item = Result<Text, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, request: Request<Text>) -> Result<Response<Text>, Status> {
        let text = request.into_inner().text;
        if text == "fail" {
            return Err(Status::not_found("no such thing"));
        }
        Ok(Response::new(Text {
            text: text.chars().rev().collect(),
        }))
    }

    type CountStream = TextStream;

    async fn count(&self, request: Request<Number>) -> Result<Response<TextStream>, Status> {
        let items = (0..request.into_inner().value).map(|index| {
            Ok(Text {
                text: format!("item {index}"),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn sum(&self, request: Request<Streaming<Text>>) -> Result<Response<Number>, Status> {
        let mut texts = request.into_inner();
        let mut value = 0;
        while texts.message().await?.is_some() {
            value += 1;
        }
        Ok(Response::new(Number { value }))
    }

    type ChatStream = TextStream;

    async fn chat(
        &self,
        request: Request<Streaming<Text>>,
    ) -> Result<Response<TextStream>, Status> {
        let answers = request.into_inner().map(|text| {
            text.map(|text| Text {
                text: text.text.to_uppercase(),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

fn text(text: &str) -> Text {
    Text { text: text.into() }
}

async fn grpc_call(address: SocketAddr) -> anyhow::Result<()> {
    let mut client = EchoClient::connect(format!("http://{address}"))
        .await
        .with_context(|| format!("connect to {address}"))?;

    let said = client.say(text("hello")).await.context("Say")?;
    println!("Say {}", said.into_inner().text);

    let Err(failed) = client.say(text("fail")).await else {
        anyhow::bail!("Say fail succeeded");
    };
    println!("Say failed {} {}", failed.code() as i32, failed.message());

    let mut counted = client
        .count(Number { value: 4 })
        .await
        .context("Count")?
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = counted.message().await.context("Count stream")? {
        items.push(item.text);
    }
    println!("Count {}", items.join(","));

    let texts = ["a", "b", "c"].map(text);
    let sum = client.sum(tokio_stream::iter(texts)).await.context("Sum")?;
    println!("Sum {}", sum.into_inner().value);

    // One text at a time, each answer awaited before the next text goes out.
    let (sender, receiver) = mpsc::channel(1);
    let mut answers = client
        .chat(ReceiverStream::new(receiver))
        .await
        .context("Chat")?
        .into_inner();
    let mut chat = Vec::new();
    for word in ["x", "y"] {
        sender.send(text(word)).await.context("Chat send")?;
        let answer = answers.message().await.context("Chat answer")?;
        chat.push(answer.context("an answer for each text")?.text);
    }
    drop(sender);
    anyhow::ensure!(
        answers.message().await.context("Chat end")?.is_none(),
        "Chat answered more texts than it was sent"
    );
    println!("Chat {}", chat.join(","));
    Ok(())
}
