//! Ports for servers that cannot report the one they bound (tansu, rabbitmq-server,
//! run-local.sh) and for servers that are down. The hookline binary is never given
//! a port: it binds port 0 and writes what it bound (`--addresses-file`).

use std::net::TcpListener;

/// Starts per server: each failure is a port taken between its pick and its bind.
const ATTEMPTS: usize = 3;

/// Runs `start` on `count` ports the kernel names as unused; when it fails (another
/// process took one in the moment between), tries again on new ones, so that race
/// costs a retry rather than a failed test.
pub fn start_on_unused_ports<T>(count: usize, what: &str, mut start: impl FnMut(&[u16]) -> Result<T, String>) -> T {
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        // Held until all are picked, so the kernel names `count` different ports.
        let held: Vec<TcpListener> = (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0")).collect();
        let ports: Vec<u16> = held.iter().map(|listener| listener.local_addr().expect("a bound address").port()).collect();
        drop(held);
        match start(&ports) {
            Ok(started) => return started,
            Err(why) => failures.push(format!("on ports {ports:?}: {why}")),
        }
    }
    panic!("{what} did not start in {ATTEMPTS} attempts:\n{}", failures.join("\n"));
}

/// A loopback port bound but not listening: a connection there is refused, as by a
/// server that is down, and no other process can take the port while this lives.
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.bind("127.0.0.1:0".parse().expect("an address")).expect("bind port 0");
        let port = socket.local_addr().expect("a bound address").port();
        ClosedPort { _socket: socket, port }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Frees the port for the server about to start on it (the address the gateway was
    /// given): it was ours until now, so only the moment until that server binds it is
    /// left to chance, and a server that finds it taken cannot try another.
    pub fn release(self) -> u16 {
        self.port
    }
}
