//! Name lookups on their own small pool of threads.
//!
//! The system resolver (`getaddrinfo`) blocks, so async code hands it to
//! threads. Tokio's shared blocking pool would do, but it also holds every
//! other blocking job of the process, and a tenant whose plugins look up
//! names that never answer would hold its threads for the resolver's whole
//! timeout each. Here lookups have [`THREADS`] threads of their own and at
//! most [`QUEUE`] waiting: past that a lookup fails at once ("too many name
//! lookups"), an ordinary failure the run or webhook sees and may retry,
//! while nothing else of the node waits on the resolver.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

/// Threads that run lookups.
pub const THREADS: usize = 4;
/// Lookups waiting for a thread, at most.
pub const QUEUE: usize = 256;

type Reply = oneshot::Sender<io::Result<Vec<SocketAddr>>>;

/// The process's lookup pool.
pub struct Lookups {
    jobs: SyncSender<(String, Reply)>,
}

impl Lookups {
    /// The pool, started on first use.
    pub fn get() -> &'static Lookups {
        static POOL: OnceLock<Lookups> = OnceLock::new();
        POOL.get_or_init(|| {
            let (jobs, queue) = sync_channel(QUEUE);
            let queue = Arc::new(Mutex::new(queue));
            for n in 0..THREADS {
                let queue = queue.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("taskhost-dns-{n}"))
                    .spawn(move || serve(&queue));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "could not start a name lookup thread");
                }
            }
            Lookups { jobs }
        })
    }

    /// The addresses of `host` (port 0).
    pub async fn lookup(&self, host: &str) -> io::Result<Vec<SocketAddr>> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send((host.to_owned(), reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(io::Error::other(format!(
                    "too many name lookups at once ({QUEUE} waiting); try again later"
                )));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(io::Error::other("the name lookup threads are gone"));
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the name lookup was abandoned")))
    }
}

fn serve(queue: &Mutex<Receiver<(String, Reply)>>) {
    loop {
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((host, reply)) = job else {
            return;
        };
        if reply.is_closed() {
            continue; // nobody waits for it any more
        }
        let found = (host.as_str(), 0).to_socket_addrs().map(Iterator::collect);
        let _ = reply.send(found);
    }
}
