//! The fault proxy alone, driven through the `toxiproxy_rust` client (or the Toxiproxy server at
//! `TOXIPROXY_URL`): a proxy in front of a local TCP echo server, each toxic measured from the
//! client's side.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mt5_chaos::proxy::control::{ProxiedLink, Stream, Toxic, Toxiproxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a read may take before the test calls it stuck.
const STUCK: Duration = Duration::from_secs(5);

/// A TCP echo server on loopback: echoes every chunk; a chunk containing `q` closes the
/// connection instead.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) if buf[..n].contains(&b'q') => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A proxy named after the test in front of a fresh echo server.
async fn link(test: &str) -> ProxiedLink {
    let echo = echo_server().await;
    let name = format!("echo-{test}-{}", std::process::id());
    ProxiedLink::start(&name, &echo.to_string()).await.expect("proxy link")
}

async fn connect(link: &ProxiedLink) -> TcpStream {
    let s = TcpStream::connect(link.listen())
        .await
        .expect("connect through the proxy");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// One byte there and back; its round-trip time.
async fn round_trip(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    s.write_all(b"x").await.expect("write");
    let mut b = [0u8; 1];
    tokio::time::timeout(STUCK, s.read_exact(&mut b))
        .await
        .expect("echo within 5 s")
        .expect("echo read");
    assert_eq!(&b, b"x");
    start.elapsed()
}

/// Reads until EOF or error, bounded; the bytes and how it ended.
async fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + STUCK;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => panic!("connection neither closed nor reset within {STUCK:?}"),
            Ok(Ok(0)) => return (out, Ok(())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (out, Err(e)),
        }
    }
}

/// The API answers like Toxiproxy: a version, `populate` binds a real port for `:0`, the proxy
/// is found by name, passes data, and (in process) counts the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_creates_a_working_proxy() {
    let link = link("api").await;
    let tp = link.toxiproxy();
    assert!(!tp.version().await.unwrap().is_empty());
    let port: u16 = link.listen().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "populate must report the bound port");
    let info = tp.proxy(link.name()).await.unwrap();
    assert!(info.enabled);
    assert_eq!(info.listen, link.listen());
    let mut s = connect(&link).await;
    let rtt = round_trip(&mut s).await;
    assert!(rtt < Duration::from_millis(200), "a clean proxy took {rtt:?}");
    if let Some(stats) = link.stats().await.unwrap() {
        assert_eq!((stats.accepted, stats.active), (1, 1), "{stats:?}");
    }
    drop(s);
    link.close().await.unwrap();
}

/// `latency` 200 ms with 50 ms jitter on the downstream: every round trip takes 150..=250 ms
/// (plus scheduling slack), they vary, and removing the toxic restores fast round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_with_jitter_delays_every_reply() {
    let link = link("latency").await;
    let tp = link.toxiproxy();
    let name = tp
        .add_toxic(
            link.name(),
            Stream::Downstream,
            Toxic::Latency {
                latency_ms: 200,
                jitter_ms: 50,
            },
            1.0,
        )
        .await
        .unwrap();
    let mut s = connect(&link).await;
    let mut rtts = Vec::new();
    for _ in 0..10 {
        rtts.push(round_trip(&mut s).await);
    }
    let ms: Vec<u128> = rtts.iter().map(Duration::as_millis).collect();
    eprintln!("latency 200±50 ms round trips: {ms:?}");
    assert!(ms.iter().all(|&m| (148..=320).contains(&m)), "{ms:?}");
    let (min, max) = (ms.iter().min().unwrap(), ms.iter().max().unwrap());
    assert!(max - min >= 5, "no jitter visible: {ms:?}");
    tp.remove_toxic(link.name(), &name).await.unwrap();
    let rtt = round_trip(&mut s).await;
    assert!(rtt < Duration::from_millis(100), "after removal: {rtt:?}");
    link.close().await.unwrap();
}

/// Disabling cuts the open connection and refuses new ones (counted as dropped); enabling
/// restores the proxy on the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_cuts_and_enable_restores() {
    let link = link("disable").await;
    let tp = link.toxiproxy();
    let mut s = connect(&link).await;
    round_trip(&mut s).await;
    tp.disable(link.name()).await.unwrap();
    let (_, _) = read_to_end(&mut s).await; // EOF or reset: either way, cut
    let refused = TcpStream::connect(link.listen()).await;
    assert!(refused.is_err(), "a disabled proxy accepted a connection");
    if let Some(stats) = link.stats().await.unwrap() {
        assert_eq!(stats.dropped, 1, "{stats:?}");
        assert_eq!(stats.disabled, 1, "{stats:?}");
        assert_eq!(stats.active, 0, "{stats:?}");
    }
    tp.enable(link.name()).await.unwrap();
    assert_eq!(tp.proxy(link.name()).await.unwrap().listen, link.listen());
    let mut s = connect(&link).await;
    round_trip(&mut s).await;
    link.close().await.unwrap();
}

/// `timeout` drops the data; with 400 ms the connection is closed after about that long, with 0
/// it stays open while the toxic is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_drops_data_and_closes_later() {
    let link = link("timeout").await;
    let tp = link.toxiproxy();
    tp.add_toxic(link.name(), Stream::Downstream, Toxic::Timeout { timeout_ms: 400 }, 1.0)
        .await
        .unwrap();
    let mut s = connect(&link).await;
    let start = Instant::now();
    s.write_all(b"hello").await.unwrap();
    let (data, _) = read_to_end(&mut s).await;
    let took = start.elapsed();
    assert!(data.is_empty(), "data passed a timeout toxic: {data:?}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );

    tp.clear_toxics(link.name()).await.unwrap();
    tp.add_toxic(link.name(), Stream::Downstream, Toxic::Timeout { timeout_ms: 0 }, 1.0)
        .await
        .unwrap();
    let mut s = connect(&link).await;
    s.write_all(b"hello").await.unwrap();
    let mut b = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_millis(800), s.read(&mut b)).await;
    assert!(r.is_err(), "timeout 0 must hold the connection without data, got {r:?}");
    link.close().await.unwrap();
}

/// A toxic added to a live connection works on its own stream, and removing it restores the
/// connection, round after round (noxious 1.0.4 swapped a live connection's directions on each
/// toxic change and could lose track of the connection; patched in `vendor/noxious`): a
/// downstream `timeout` on an open connection lets the request through to the upstream and eats
/// the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxic_added_to_a_live_connection_hits_its_own_stream() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || seen.send(buf[..n].to_vec()).is_err() || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let link = ProxiedLink::start(&format!("live-{}", std::process::id()), &upstream.to_string())
        .await
        .unwrap();
    let tp = link.toxiproxy();
    let mut s = connect(&link).await;
    round_trip(&mut s).await;
    assert_eq!(seen_rx.recv().await.unwrap(), b"x");
    for round in 0..3 {
        // Several changes, so an odd count of link rebuilds would show.
        let name = tp
            .add_toxic(link.name(), Stream::Downstream, Toxic::Timeout { timeout_ms: 0 }, 1.0)
            .await
            .unwrap();
        s.write_all(b"y").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), seen_rx.recv()).await;
        assert_eq!(
            got.ok().flatten().as_deref(),
            Some(&b"y"[..]),
            "round {round}: the request did not reach the upstream"
        );
        let mut b = [0u8; 1];
        let reply = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await;
        assert!(
            reply.is_err(),
            "round {round}: the reply passed a downstream timeout toxic"
        );
        tp.remove_toxic(link.name(), &name).await.unwrap();
        round_trip(&mut s).await;
        assert_eq!(seen_rx.recv().await.unwrap(), b"x");
    }
    link.close().await.unwrap();
}

/// Removing a toxic from a live connection loses none of the data the toxic held (noxious 1.0.4
/// dropped it; patched in `vendor/noxious`): 300 ms latency on the replies of a connection that
/// writes a numbered message every 10 ms; the toxic is removed while a few hundred ms of replies
/// are held, then added and removed again; every byte comes back, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_latency_toxic_from_a_live_connection_loses_no_bytes() {
    const MESSAGES: usize = 60;
    let link = link("drain").await;
    let tp = link.toxiproxy().clone();
    let mut s = connect(&link).await;
    round_trip(&mut s).await;
    let latency = Toxic::Latency {
        latency_ms: 300,
        jitter_ms: 0,
    };
    let name = tp
        .add_toxic(link.name(), Stream::Downstream, latency, 1.0)
        .await
        .unwrap();
    let (mut r, mut w) = s.into_split();
    let sent: Vec<u8> = (0..MESSAGES).flat_map(|i| format!("m{i:06}.").into_bytes()).collect();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        for chunk in to_send.chunks(8) {
            w.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w
    });
    let toxics = tokio::spawn({
        let tp = tp.clone();
        let proxy = link.name().to_string();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tp.remove_toxic(&proxy, &name).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            let name = tp.add_toxic(&proxy, Stream::Downstream, latency, 1.0).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            tp.remove_toxic(&proxy, &name).await.unwrap();
        }
    });
    let mut got = vec![0u8; sent.len()];
    tokio::time::timeout(STUCK, r.read_exact(&mut got))
        .await
        .expect("every byte back within 5 s (bytes lost in a toxic change?)")
        .expect("read");
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&sent));
    toxics.await.unwrap();
    drop(writer.await.unwrap());
    link.close().await.unwrap();
}

/// Latency delays each chunk from its own arrival, as in Toxiproxy, not from when the previous
/// chunk left (noxious 1.0.4 added them up; patched in `vendor/noxious`): ten bytes written
/// 30 ms apart under 300 ms upstream latency each come back about 300 ms after they were
/// written, where adding up would make the second one take about 570 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_each_chunk_from_its_arrival() {
    let link = link("pipelined").await;
    let tp = link.toxiproxy();
    tp.add_toxic(
        link.name(),
        Stream::Upstream,
        Toxic::Latency {
            latency_ms: 300,
            jitter_ms: 0,
        },
        1.0,
    )
    .await
    .unwrap();
    let s = connect(&link).await;
    let (mut r, mut w) = s.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut sent_at = Vec::new();
        for i in 0..10u8 {
            sent_at.push(start.elapsed());
            w.write_all(&[b'0' + i]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        (w, sent_at)
    });
    let mut back_at = Vec::new();
    let mut got = Vec::new();
    while got.len() < 10 {
        let mut buf = [0u8; 10];
        let n = tokio::time::timeout(STUCK, r.read(&mut buf))
            .await
            .expect("the echoes within 5 s")
            .expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        back_at.resize(got.len(), start.elapsed());
    }
    let (_w, sent_at) = writer.await.unwrap();
    assert_eq!(got, b"0123456789");
    let delays: Vec<u128> = back_at
        .iter()
        .zip(&sent_at)
        .map(|(back, sent)| back.saturating_sub(*sent).as_millis())
        .collect();
    eprintln!("per-byte delays under 300 ms latency, written 30 ms apart: {delays:?} ms");
    assert!(
        delays.iter().all(|&d| (295..450).contains(&d)),
        "each byte should take about 300 ms: {delays:?}"
    );
    link.close().await.unwrap();
}

/// `limit_data` passes exactly N bytes, then closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_closes_after_n_bytes() {
    let link = link("limit").await;
    let tp = link.toxiproxy();
    tp.add_toxic(link.name(), Stream::Downstream, Toxic::LimitData { bytes: 10 }, 1.0)
        .await
        .unwrap();
    let mut s = connect(&link).await;
    s.write_all(&[b'a'; 32]).await.unwrap();
    let (data, _) = read_to_end(&mut s).await;
    assert_eq!(data.len(), 10, "{data:?}");
    link.close().await.unwrap();
}

/// `reset_peer` (a raw request: `toxiproxy_rust` has no call for it): the reply is dropped and
/// the client gets a TCP RST, at once with timeout 0 and after about 300 ms with 300; counted as
/// resets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_resets_the_connection() {
    let link = link("reset").await;
    let tp = link.toxiproxy();
    let name = tp
        .add_toxic(link.name(), Stream::Downstream, Toxic::ResetPeer { timeout_ms: 0 }, 1.0)
        .await
        .unwrap();
    let mut s = connect(&link).await;
    s.write_all(b"x").await.unwrap();
    let (data, end) = read_to_end(&mut s).await;
    assert!(data.is_empty());
    let err = end.expect_err("expected a reset, got a clean EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    tp.remove_toxic(link.name(), &name).await.unwrap();
    tp.add_toxic(
        link.name(),
        Stream::Downstream,
        Toxic::ResetPeer { timeout_ms: 300 },
        1.0,
    )
    .await
    .unwrap();
    let mut s = connect(&link).await;
    let start = Instant::now();
    s.write_all(b"x").await.unwrap();
    let (_, end) = read_to_end(&mut s).await;
    let took = start.elapsed();
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    assert!(took >= Duration::from_millis(280), "reset after {took:?}");
    if let Some(stats) = link.stats().await.unwrap() {
        assert_eq!(stats.reset, 2, "{stats:?}");
    }
    link.close().await.unwrap();
}

/// `bandwidth` 10 KB/s: five 900-byte echoes take about 90 ms each, and a 4000-byte one about
/// 400 ms, sliced (noxious 1.0.4's bandwidth toxic panicked, closing the connection, on a chunk
/// larger than `rate` × 100 bytes; patched in `vendor/noxious`); `slow_close` 400 ms holds the
/// close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_and_slow_close_slow_things_down() {
    let link = link("bandwidth").await;
    let tp = link.toxiproxy();
    tp.add_toxic(link.name(), Stream::Downstream, Toxic::Bandwidth { rate_kbps: 10 }, 1.0)
        .await
        .unwrap();
    let mut s = connect(&link).await;
    let payload = vec![b'b'; 900];
    let start = Instant::now();
    for _ in 0..5 {
        s.write_all(&payload).await.unwrap();
        let mut got = vec![0u8; payload.len()];
        tokio::time::timeout(STUCK, s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(430) && took < Duration::from_secs(3),
        "5 × 900 B at 10 KB/s took {took:?}"
    );
    let big = vec![b'B'; 4000];
    let start = Instant::now();
    s.write_all(&big).await.unwrap();
    let mut got = vec![0u8; big.len()];
    tokio::time::timeout(STUCK, s.read_exact(&mut got))
        .await
        .expect("a 4000-byte echo within 5 s")
        .expect("the connection survives a chunk larger than rate × 100 bytes");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "4000 B at 10 KB/s took {took:?}"
    );

    tp.clear_toxics(link.name()).await.unwrap();
    tp.add_toxic(link.name(), Stream::Downstream, Toxic::SlowClose { delay_ms: 400 }, 1.0)
        .await
        .unwrap();
    let mut s = connect(&link).await;
    let start = Instant::now();
    s.write_all(b"q").await.unwrap(); // the echo server closes
    let (_, end) = read_to_end(&mut s).await;
    end.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(380), "closed after {took:?}");
    link.close().await.unwrap();
}

/// `DELETE` removes the proxy: it is not found and its port refuses connections; `reset`
/// removes toxics and enables proxies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_delete() {
    let link = link("delete").await;
    let tp: Toxiproxy = link.toxiproxy().clone();
    // Both directions: noxious 1.0.4's "remove all" cleared the upstream toxics only (patched
    // in `vendor/noxious`).
    for stream in [Stream::Upstream, Stream::Downstream] {
        tp.add_toxic(link.name(), stream, Toxic::Timeout { timeout_ms: 0 }, 1.0)
            .await
            .unwrap();
    }
    tp.disable(link.name()).await.unwrap();
    tp.reset().await.unwrap();
    assert!(tp.toxics(link.name()).await.unwrap().is_empty());
    let mut s = connect(&link).await;
    round_trip(&mut s).await;
    drop(s);
    tp.delete(link.name()).await.unwrap();
    assert!(tp.proxy(link.name()).await.is_err(), "a deleted proxy is still found");
    assert!(TcpStream::connect(link.listen()).await.is_err());
}

/// `mt5-chaos proxy --listen` serves the same API as a process and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_process_serves_the_api() {
    let port = mt5_fixtures::free_port().unwrap();
    let api = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mt5-chaos"))
        .args(["proxy", "--listen", &api])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let tp = Toxiproxy::new(&format!("http://{api}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tp.version().await.is_err() {
        assert!(Instant::now() < deadline, "mt5-chaos proxy did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let echo = echo_server().await;
    let p = tp.populate("echo", "127.0.0.1:0", &echo.to_string()).await.unwrap();
    let mut s = TcpStream::connect(&p.listen).await.unwrap();
    round_trip(&mut s).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
