//! `pods/portforward`: what `kubectl port-forward` speaks. kubectl (1.31 and later)
//! tunnels SPDY/3.1 through a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`): the
//! WebSocket's binary messages carry the SPDY byte stream. On it, each forwarded
//! connection is a pair of streams opened by the client (apimachinery
//! `util/httpstream/spdy`, client-go `tools/portforward`): an `error` stream and a
//! `data` stream, both naming the `port` and a `requestID`. The simulated node's
//! containers are local processes, so a data stream is joined to `127.0.0.1:<port>`.
//!
//! SPDY framing follows the SPDY/3 draft as `moby/spdystream` implements it: control
//! frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS,
//! WINDOW_UPDATE) and data frames; header blocks are one zlib stream per direction with
//! the SPDY/3 dictionary (`spdy3-dictionary.bin`). spdystream keeps no flow-control
//! windows, so WINDOW_UPDATE is read and ignored.

use axum::extract::ws::{Message, WebSocket};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The WebSocket subprotocol kubectl asks for.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const DICTIONARY: &[u8] = include_bytes!("spdy3-dictionary.bin");
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;

/// Header blocks of one connection: the client's zlib stream in, ours out.
struct Headers {
    inflate: Decompress,
    deflate: Compress,
}

impl Headers {
    fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        let _ = deflate.set_dictionary(DICTIONARY);
        Headers { inflate: Decompress::new(true), deflate }
    }

    /// Decodes a compressed name/value block.
    fn decode(&mut self, mut input: &[u8]) -> Option<Vec<(String, String)>> {
        let mut plain = Vec::with_capacity(4096);
        while !input.is_empty() {
            let before = self.inflate.total_in();
            if plain.capacity() - plain.len() < 1024 {
                plain.reserve(4096);
            }
            match self.inflate.decompress_vec(input, &mut plain, FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(DICTIONARY).ok()?;
                }
                Err(_) => return None,
            }
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            if used == 0 && plain.capacity() > plain.len() {
                break;
            }
        }
        parse_block(&plain)
    }

    /// Encodes a name/value block.
    fn encode(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend((pairs.len() as u32).to_be_bytes());
        for (n, v) in pairs {
            plain.extend((n.len() as u32).to_be_bytes());
            plain.extend(n.as_bytes());
            plain.extend((v.len() as u32).to_be_bytes());
            plain.extend(v.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let _ = self.deflate.compress_vec(&plain, &mut out, FlushCompress::Sync);
        out
    }
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn parse_block(b: &[u8]) -> Option<Vec<(String, String)>> {
    let n = be32(b)? as usize;
    let mut at = 4;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = be32(&b[at..])? as usize;
        let name = String::from_utf8_lossy(b.get(at + 4..at + 4 + len)?).to_lowercase();
        at += 4 + len;
        let len = be32(&b[at..])? as usize;
        let value = String::from_utf8_lossy(b.get(at + 4..at + 4 + len)?).to_string();
        at += 4 + len;
        out.push((name, value));
    }
    Some(out)
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80, 0x03];
    f.extend(kind.to_be_bytes());
    f.push(flags);
    f.extend(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend(payload);
    f
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    f.push(flags);
    f.extend(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend(payload);
    f
}

/// One forwarded connection's streams.
#[derive(Default)]
struct Request {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

/// Serves one port-forward session until the client goes.
pub async fn run(mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let mut headers = Headers::new();
    let mut input: Vec<u8> = Vec::new();
    let mut requests: HashMap<String, Request> = HashMap::new();
    // Data stream id → where its bytes go (the connection to the container's port).
    let mut writers: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => input.extend_from_slice(&b),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => continue,
            },
            out = rx.recv() => {
                let Some(frame) = out else { break };
                if socket.send(Message::Binary(frame.into())).await.is_err() {
                    break;
                }
                continue;
            }
        }
        // Every complete frame received so far.
        while input.len() >= 8 {
            let len = u32::from_be_bytes([0, input[5], input[6], input[7]]) as usize;
            if input.len() < 8 + len {
                break;
            }
            let frame: Vec<u8> = input.drain(..8 + len).collect();
            let (head, payload) = frame.split_at(8);
            let flags = head[4];
            if head[0] & 0x80 == 0 {
                let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
                if let Some(w) = writers.get(&stream) {
                    if !payload.is_empty() {
                        let _ = w.send(Some(payload.to_vec())).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = w.send(None).await;
                    }
                }
                continue;
            }
            match u16::from_be_bytes([head[2], head[3]]) {
                SYN_STREAM if payload.len() >= 10 => {
                    let stream = be32(payload).unwrap_or(0) & 0x7fff_ffff;
                    let Some(pairs) = headers.decode(&payload[10..]) else { break };
                    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
                    let mut reply = stream.to_be_bytes().to_vec();
                    reply.extend(headers.encode(&[]));
                    let _ = tx.send(control(SYN_REPLY, 0, &reply)).await;
                    let req = requests.entry(get("requestid")).or_default();
                    req.port = get("port").parse().unwrap_or(0);
                    match get("streamtype").as_str() {
                        "error" => req.error = Some(stream),
                        "data" => req.data = Some(stream),
                        _ => {}
                    }
                    if let (Some(data_id), Some(error_id)) = (req.data, req.error)
                        && !writers.contains_key(&data_id)
                    {
                        let (wtx, wrx) = mpsc::channel(64);
                        writers.insert(data_id, wtx);
                        tokio::spawn(connect(req.port, data_id, error_id, wrx, tx.clone()));
                    }
                }
                RST_STREAM => {
                    let stream = be32(payload).unwrap_or(0) & 0x7fff_ffff;
                    writers.remove(&stream);
                }
                PING => {
                    let _ = tx.send(control(PING, 0, payload)).await;
                }
                GOAWAY => return,
                // SETTINGS, HEADERS, WINDOW_UPDATE: nothing to do.
                _ => {}
            }
        }
    }
}

/// Joins a data stream to the container's port; a failure is written on the error
/// stream, as the kubelet does.
async fn connect(
    port: u16,
    data_id: u32,
    error_id: u32,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
    to_client: mpsc::Sender<Vec<u8>>,
) {
    let conn = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod: failed to connect to localhost:{port}: {e}");
            let _ = to_client.send(data(error_id, FLAG_FIN, msg.as_bytes())).await;
            let _ = to_client.send(data(data_id, FLAG_FIN, &[])).await;
            return;
        }
    };
    let _ = to_client.send(data(error_id, FLAG_FIN, &[])).await;
    let (mut reader, mut writer) = conn.into_split();
    let up = tokio::spawn(async move {
        while let Some(Some(chunk)) = from_client.recv().await {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to_client.send(data(data_id, 0, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_client.send(data(data_id, FLAG_FIN, &[])).await;
    let _ = up.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_round_trip_through_the_dictionary_zlib_streams() {
        let mut a = Headers::new();
        let mut b = Headers::new();
        let first = a.encode(&[("streamtype", "data"), ("port", "5432"), ("requestid", "0")]);
        let second = a.encode(&[("streamtype", "error")]);
        assert_eq!(
            b.decode(&first).unwrap(),
            [("streamtype".into(), "data".into()), ("port".into(), "5432".into()), ("requestid".into(), "0".into())]
        );
        assert_eq!(b.decode(&second).unwrap(), [("streamtype".to_string(), "error".to_string())]);
    }
}
