//! Loads the committed programs into the running kernel and times a loopback exchange with a
//! known server delay. Kernel-dependent: skips (and says why) without privileges or BTF.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use generator_ebpf::{AttachMethod, Probes, Transport};

const ROUNDS: u64 = 20;
const DELAY: Duration = Duration::from_millis(2);

/// Both transports, one after the other: probes loaded twice for one process at the same
/// time would both register every socket of it.
#[test]
fn times_each_request_on_our_own_socket_only() {
    for transport in [Transport::Histogram, Transport::RingBuf] {
        println!("transport {transport:?}");
        exchange(transport);
    }
}

fn exchange(transport: Transport) {
    let mut probes = match Probes::load_with(std::process::id(), transport) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipped: kernel probes unavailable here: {e}");
            return;
        }
    };
    println!("attached with {}", probes.method());
    if generator_ebpf::kernel_version().is_some_and(|v| v >= (6, 3)) {
        assert_eq!(probes.method(), AttachMethod::Tracepoint);
    }
    probes.measure_from(Instant::now()).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        for _ in 0..ROUNDS {
            s.read_exact(&mut b).unwrap();
            std::thread::sleep(DELAY);
            s.write_all(b"y").unwrap();
        }
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    for _ in 0..ROUNDS {
        c.write_all(b"x").unwrap();
        c.read_exact(&mut b).unwrap();
    }
    server.join().unwrap();
    let st = probes.read().unwrap();
    println!("{st:?}");
    let timed: u64 = st.latency_ns.iter().map(|b| b.2).sum();
    assert_eq!(timed, ROUNDS, "one kernel latency per request: {st:?}");
    assert_eq!(st.sends, ROUNDS);
    // The server's accepted socket is not ours: one registered socket, one connect time.
    assert_eq!(st.registered, 1);
    assert_eq!(st.connect_ns.iter().map(|b| b.2).sum::<u64>(), 1);
    for &(lo, w, _) in &st.latency_ns {
        assert!(
            lo + w > DELAY.as_nanos() as u64,
            "bucket [{lo}, {}) below the delay",
            lo + w
        );
        assert!(lo < 1_000_000_000, "implausible latency bucket {lo}");
    }
    assert!(
        !st.srtt_us.is_empty(),
        "tcp_probe saw the incoming segments"
    );
}
