//! Connection slots: a deadline for every request head, not only a connection's first, and the
//! longest-idle connection closed first when a worker's slots run out.
//!
//! actix-http times only the first request head of a connection (its head timer is set once per
//! connection) and clears the keep-alive timer as soon as one byte of a next request arrives: a
//! client that sends one byte after its first answer holds its slot forever. Each worker thread
//! therefore keeps a table of its connections, filled by `on_connect` and told by a middleware
//! when a request is being served. A sweep closes (`shutdown(2)`) a connection whose next request
//! head, started after an answer, is not complete within `client_timeout` of its first byte (seen
//! as the kernel's count of bytes received, `TCP_INFO`, passing the count at the answer), and in
//! any case one that has waited
//! `keep_alive + client_timeout` since its last answer (idle ones are closed by actix at
//! `keep_alive`). When a new connection takes a worker's last slot, the connection that has
//! waited longest between requests is closed, so a new client gets a slot at once whatever the
//! others hold.
//!
//! Each entry holds its own duplicate of the socket's descriptor: `shutdown` through it reaches
//! the connection's socket and never another one that reused a closed descriptor's number.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use actix_web::dev::{Extensions, Service, ServiceRequest, ServiceResponse};
use actix_web::rt::net::TcpStream;

use crate::metrics::Metrics;

/// How often each worker looks at its connections.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The limits every worker applies; copied into each worker's table.
#[derive(Clone)]
pub struct Slots {
    /// A request head must be complete this long after its first byte (`server.client_timeout`).
    pub head_timeout: Duration,
    /// actix closes a connection idle this long (`server.keep_alive`).
    pub keep_alive: Duration,
    /// actix's cap on one worker's connections (`server.max_connections` over the workers).
    pub per_worker: usize,
    pub metrics: Metrics,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head since `since` (accepted, or last answer given). `received`:
    /// the bytes the socket had received by then (`None`: unknown); `first_byte`: when more
    /// were first seen, the start of the next head.
    Between {
        since: Instant,
        received: Option<u64>,
        first_byte: Option<Instant>,
    },
    /// A complete head arrived: the handler bounds the body and the answer itself.
    Serving,
}

struct Conn {
    id: u64,
    socket: OwnedFd,
    phase: Cell<Phase>,
    /// Shut down by us: it stays in the table until actix has dropped it, and is not counted or
    /// chosen again meanwhile.
    closed: Cell<bool>,
}

impl Conn {
    fn close(&self) {
        self.closed.set(true);
        // SAFETY: `socket` is our own descriptor of the connection's socket, open until `self`
        // drops; shutdown does not close it, it ends the connection for actix's descriptor too.
        unsafe {
            libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}

/// One worker thread's connections.
struct Table {
    slots: Slots,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    next_id: Cell<u64>,
}

thread_local! {
    static TABLE: RefCell<Option<Rc<Table>>> = const { RefCell::new(None) };
}

/// Kept in the connection's data: dropped with the connection, it leaves the table.
struct Registration {
    conn: Rc<Conn>,
    table: Weak<Table>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(table) = self.table.upgrade() {
            table.conns.borrow_mut().remove(&self.conn.id);
        }
    }
}

impl Slots {
    /// `HttpServer::on_connect`: registers a new connection with its worker's table.
    pub fn on_connect(&self, io: &dyn Any, data: &mut Extensions) {
        let Some(stream) = io.downcast_ref::<TcpStream>() else {
            return;
        };
        let socket = match stream.as_fd().try_clone_to_owned() {
            Ok(socket) => socket,
            Err(err) => {
                // Out of descriptors: the connection is served, only not guarded.
                tracing::warn!(error = %err, "cannot watch a connection's deadlines");
                return;
            }
        };
        let table = TABLE.with(|cell| {
            Rc::clone(cell.borrow_mut().get_or_insert_with(|| {
                let table = Rc::new(Table {
                    slots: self.clone(),
                    conns: RefCell::default(),
                    next_id: Cell::new(0),
                });
                actix_web::rt::spawn(sweep(Rc::downgrade(&table)));
                table
            }))
        });
        let id = table.next_id.get();
        table.next_id.set(id + 1);
        let conn = Rc::new(Conn {
            id,
            socket,
            closed: Cell::new(false),
            // A new connection: its first byte starts the first head.
            phase: Cell::new(Phase::Between {
                since: Instant::now(),
                received: Some(0),
                first_byte: None,
            }),
        });
        let full = {
            let mut conns = table.conns.borrow_mut();
            conns.insert(id, Rc::clone(&conn));
            conns.len() >= table.slots.per_worker
        };
        if full {
            table.evict_longest_idle(id);
        }
        data.insert(Registration {
            conn,
            table: Rc::downgrade(&table),
        });
    }
}

impl Table {
    /// Closes the connection that has waited longest for its next request, other than `keep`.
    fn evict_longest_idle(&self, keep: u64) {
        let victim = self
            .conns
            .borrow()
            .values()
            .filter(|c| c.id != keep && !c.closed.get())
            .filter_map(|c| match c.phase.get() {
                Phase::Between { since, .. } => Some((since, Rc::clone(c))),
                Phase::Serving => None,
            })
            .min_by_key(|(since, _)| *since)
            .map(|(_, c)| c);
        if let Some(conn) = victim {
            conn.close();
            self.slots.metrics.connection_closed("evicted_idle");
        }
    }

    /// Closes the connections past their head deadline.
    fn sweep_once(&self, now: Instant) {
        let head = self.slots.head_timeout;
        let limit = self.slots.keep_alive + head;
        let mut late = Vec::new();
        for conn in self.conns.borrow().values().filter(|c| !c.closed.get()) {
            let Phase::Between {
                since,
                received,
                first_byte,
            } = conn.phase.get()
            else {
                continue;
            };
            // Seen at the first sweep after it came: up to one sweep late.
            let first_byte = first_byte.or_else(|| {
                let more = received? < bytes_received(&conn.socket)?;
                more.then(|| {
                    conn.phase.set(Phase::Between {
                        since,
                        received,
                        first_byte: Some(now),
                    });
                    now
                })
            });
            let head_late = first_byte.is_some_and(|at| now.duration_since(at) > head);
            if head_late || now.duration_since(since) > limit {
                late.push(Rc::clone(conn));
            }
        }
        for conn in late {
            conn.close();
            self.slots.metrics.connection_closed("head_timeout");
        }
    }
}

async fn sweep(table: Weak<Table>) {
    let mut tick = actix_web::rt::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(table) = table.upgrade() else {
            return;
        };
        table.sweep_once(Instant::now());
    }
}

/// Bytes `socket` has received so far (`TCP_INFO`), when the kernel tells.
#[cfg(target_os = "linux")]
fn bytes_received(socket: &OwnedFd) -> Option<u64> {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable tcp_info of `len` bytes; the descriptor is ours and open.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // Kernels before 4.1 fill a shorter struct, without the count.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
    (rc == 0 && len as usize >= needed).then_some(info.tcpi_bytes_received)
}

#[cfg(not(target_os = "linux"))]
fn bytes_received(_: &OwnedFd) -> Option<u64> {
    None
}

/// Middleware of the webhook listener (`App::wrap_fn`): marks the connection served from a
/// complete head to the answer, and between requests from then on.
pub fn track<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let conn = req.conn_data::<Registration>().map(|r| Rc::clone(&r.conn));
    if let Some(conn) = &conn {
        conn.phase.set(Phase::Serving);
    }
    let response = srv.call(req);
    async move {
        let response = response.await;
        if let Some(conn) = conn {
            // The request is read whole by now: what arrives beyond this count is the next head.
            conn.phase.set(Phase::Between {
                since: Instant::now(),
                received: bytes_received(&conn.socket),
                first_byte: None,
            });
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(per_worker: usize) -> (Rc<Table>, Vec<std::net::TcpStream>) {
        let table = Rc::new(Table {
            slots: Slots {
                head_timeout: Duration::from_secs(2),
                keep_alive: Duration::from_secs(5),
                per_worker,
                metrics: Metrics::new(),
            },
            conns: RefCell::default(),
            next_id: Cell::new(0),
        });
        (table, Vec::new())
    }

    /// A connected pair; the server side goes into the table with `phase`.
    fn add(table: &Table, peers: &mut Vec<std::net::TcpStream>, phase: Phase) -> u64 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let id = table.next_id.get();
        table.next_id.set(id + 1);
        table.conns.borrow_mut().insert(
            id,
            Rc::new(Conn {
                id,
                socket: OwnedFd::from(server),
                phase: Cell::new(phase),
                closed: Cell::new(false),
            }),
        );
        peers.push(client);
        id
    }

    fn closed(peer: &mut std::net::TcpStream) -> bool {
        use std::io::Read;
        peer.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        matches!(peer.read(&mut [0u8; 8]), Ok(0))
    }

    #[test]
    fn a_next_head_started_and_not_finished_in_time_is_closed() {
        use std::io::Write;
        let (table, mut peers) = table(100);
        let since = Instant::now();
        let between = Phase::Between {
            since,
            received: Some(0),
            first_byte: None,
        };
        add(&table, &mut peers, between);
        add(&table, &mut peers, between);
        add(&table, &mut peers, Phase::Serving);
        // The first peer starts its next request after the answer; the second stays idle.
        std::thread::sleep(Duration::from_millis(50));
        peers[0].write_all(b"P").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        table.sweep_once(Instant::now());
        let Phase::Between {
            first_byte: Some(first_byte),
            ..
        } = table.conns.borrow()[&0].phase.get()
        else {
            panic!("the first byte of the next head was not seen");
        };
        assert!(!closed(&mut peers[0]), "closed before its deadline");
        for idle in [1, 2] {
            let phase = table.conns.borrow()[&idle].phase.get();
            assert!(
                !matches!(
                    phase,
                    Phase::Between {
                        first_byte: Some(_),
                        ..
                    }
                ),
                "bytes seen on a silent connection: {phase:?}"
            );
        }
        // Just before client_timeout (2 s) after that byte, still open; just after, closed. The
        // idle one and the one being served stay.
        table.sweep_once(first_byte + Duration::from_millis(1900));
        assert!(!closed(&mut peers[0]), "closed before its deadline");
        table.sweep_once(first_byte + Duration::from_millis(2100));
        assert!(closed(&mut peers[0]), "the late head was not closed");
        assert!(
            !closed(&mut peers[1]),
            "an idle connection was closed early"
        );
        assert!(
            !closed(&mut peers[2]),
            "a connection being served was closed"
        );
        // keep_alive + client_timeout after its answer, even a connection never seen sending.
        table.sweep_once(since + Duration::from_millis(7100));
        assert!(
            closed(&mut peers[1]),
            "the overdue connection was not closed"
        );
        assert!(
            !closed(&mut peers[2]),
            "a connection being served was closed"
        );
    }

    #[test]
    fn the_longest_idle_connection_goes_first_when_slots_run_out() {
        let (table, mut peers) = table(3);
        let now = Instant::now();
        let idle = |ago: u64| Phase::Between {
            since: now - Duration::from_secs(ago),
            received: Some(0),
            first_byte: None,
        };
        add(&table, &mut peers, idle(1));
        add(&table, &mut peers, idle(3));
        add(&table, &mut peers, Phase::Serving);
        let newest = add(&table, &mut peers, idle(0));
        table.evict_longest_idle(newest);
        assert!(closed(&mut peers[1]), "the longest idle was kept");
        for kept in [0, 2, 3] {
            assert!(!closed(&mut peers[kept]), "connection {kept} was closed");
        }
        // Until actix drops it, the closed one stays listed: the next eviction passes it over.
        table.evict_longest_idle(newest);
        assert!(closed(&mut peers[0]), "the next longest idle was kept");
        assert!(
            !closed(&mut peers[2]),
            "a connection being served was closed"
        );
        assert!(!closed(&mut peers[3]), "the newest connection was closed");
    }
}
