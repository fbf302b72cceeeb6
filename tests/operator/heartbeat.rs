//! Heartbeats to a location that stops answering: the writer waits for the write under
//! way instead of opening another one every interval, and beats resume, with rising
//! epochs, once the location answers again.

use super::{Env, example_at, system_clock};
use crate::support::s3;
use lifeline::repo::heartbeat;
use lifeline::sim::Options as SimOptions;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TCP proxy in front of an S3 server that can stop answering: while stalled it cuts
/// the connections it was forwarding and holds new ones open without a reply (a hung
/// endpoint, not a refused one), and counts them.
struct Stall {
    endpoint: String,
    stalled: Arc<AtomicBool>,
    accepted_stalled: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Stall {
    fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stall = Self {
            endpoint,
            stalled: Arc::default(),
            accepted_stalled: Arc::default(),
            held: Arc::default(),
            live: Arc::default(),
        };
        let (stalled, count, held, live) =
            (stall.stalled.clone(), stall.accepted_stalled.clone(), stall.held.clone(), stall.live.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if stalled.load(Ordering::SeqCst) {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.lock().unwrap().push(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(&target) else { continue };
                live.lock().unwrap().push(client.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        stall
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        for c in self.live.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        for c in self.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn a_hung_location_gets_one_heartbeat_write_at_a_time_and_beats_resume_when_it_answers() {
    let (eu, us) = s3::regions();
    let proxy = Stall::start(&eu.endpoint);
    let mut env = Env::start(SimOptions::default());
    let prefix = s3::unique("hung");
    let yaml = example_at("records-two-regions.yaml", &prefix, &proxy.endpoint, &us.endpoint)
        .replace("  replicas: 3\n", "  replicas: 1\n");
    env.apply(&yaml);
    env.start_operator(system_clock());
    // Read at the server itself, not through the proxy.
    let at_eu = eu.open(&format!("s3://lifeline/{prefix}-eu"));
    let epoch = || heartbeat::read(at_eu.as_ref(), "records").unwrap().iter().map(|b| b.epoch).max().unwrap_or(0);
    let wait_for = |what: &str, secs: u64, done: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(secs);
        while !done() {
            assert!(Instant::now() < until, "{what} within {secs} s");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("heartbeats at eu", 90, &|| epoch() >= 2);

    // Ten heartbeat intervals (1 s in tests) with eu hung: one write waits there (on one
    // connection, more only if the client gives up on it and retries), where a new
    // write each interval would pile up ten.
    proxy.stall();
    let stalled_at = epoch();
    std::thread::sleep(Duration::from_secs(10));
    let opened = proxy.accepted_stalled.load(Ordering::SeqCst);
    assert!(opened <= 3, "{opened} connections opened to a hung location in 10 heartbeat intervals");
    assert!(epoch() <= stalled_at + 1, "beats landed at a hung location");

    // eu answers again: beats resume, and their epochs keep rising.
    proxy.resume();
    let resumed = epoch();
    wait_for("heartbeats at eu to resume", 60, &|| epoch() >= resumed + 2);
}
