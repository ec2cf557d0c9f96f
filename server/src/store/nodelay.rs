//! Turns Nagle's algorithm off on every PostgreSQL connection.
//!
//! sqlx 0.9.0 opens its TCP connections without `TCP_NODELAY`
//! (launchbadge/sqlx#4335; the fix, #4336, is merged but not yet released).
//! A message that leaves in more than one segment, such as a multi-row
//! statement over TLS or over a real network, then holds its last segment
//! until the server's delayed ACK arrives: 40 ms on Linux. Measured here, a
//! 100-row enqueue spent 100 ms in the statement instead of 15.
//!
//! sqlx hands out no socket, so this finds it: the server reports the
//! connection's ports (`inet_client_port`, `inet_server_port`), and the one
//! socket of this process with that local and peer port is the connection.
//! The search reads `/proc` and makes a few system calls per descriptor, so
//! it runs on the blocking pool, not on the runtime's workers; and it looks
//! at each descriptor through a duplicate of its own, which no other thread
//! can close or reuse under it. Remove this module once sqlx sets the
//! option itself.

use sea_orm::sqlx::{self, PgConnection};

/// Sets `TCP_NODELAY` on `connection`'s socket. A connection over a Unix
/// socket has nothing to set; a socket that cannot be found (a proxy in
/// between rewrites the ports) is logged and left as it is.
pub(super) async fn disable_nagle(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    let (client_port, server_port): (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(connection)
            .await?;
    let ports = client_port
        .and_then(|port| u16::try_from(port).ok())
        .zip(server_port.and_then(|port| u16::try_from(port).ok()));
    if let Some((local, peer)) = ports {
        let found = tokio::task::spawn_blocking(move || socket::set_nodelay(local, peer))
            .await
            .unwrap_or_else(|joined| Err(std::io::Error::other(joined)));
        match found {
            Ok(true) => {}
            Ok(false) => tracing::debug!(
                local,
                peer,
                "no socket with these ports (a proxy in between?); Nagle's algorithm stays on"
            ),
            Err(error) => {
                tracing::warn!(%error, "could not turn Nagle's algorithm off on a database connection");
            }
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod socket {
    use std::{
        io,
        os::fd::{BorrowedFd, OwnedFd, RawFd},
    };

    use socket2::SockRef;

    /// Sets `TCP_NODELAY` on this process's socket from `local` to `peer`
    /// port; whether there was one.
    pub(super) fn set_nodelay(local: u16, peer: u16) -> io::Result<bool> {
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let entry = entry?;
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<RawFd>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            let Some(fd) = duplicate(fd) else {
                continue;
            };
            let socket = SockRef::from(&fd);
            let port = |address: io::Result<socket2::SockAddr>| {
                address.ok().and_then(|a| a.as_socket()).map(|a| a.port())
            };
            if port(socket.local_addr()) == Some(local) && port(socket.peer_addr()) == Some(peer) {
                socket.set_tcp_nodelay(true)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A descriptor of this process's own for whatever `fd` refers to now
    /// (`fcntl(F_DUPFD_CLOEXEC)`), or `None` if `fd` is closed. Another
    /// thread may close or reuse `fd` at any time; the duplicate stays
    /// open until dropped and refers to one socket throughout, so the
    /// ports read from it belong to the socket whose option is set.
    fn duplicate(fd: RawFd) -> Option<OwnedFd> {
        // SAFETY: the borrow lives for one `fcntl` that creates a new
        // descriptor and changes nothing of `fd` or what it refers to. If
        // `fd` was closed meanwhile, the call fails with EBADF; if it was
        // reused, the duplicate is of the new file, whose ports then do
        // not match (or do, and it is the connection).
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        borrowed.try_clone_to_owned().ok()
    }
}

#[cfg(not(target_os = "linux"))]
mod socket {
    /// Finding the socket needs Linux's `/proc`; elsewhere it stays as
    /// sqlx opened it.
    pub(super) fn set_nodelay(_local: u16, _peer: u16) -> std::io::Result<bool> {
        Ok(false)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn finds_the_socket_by_its_ports_and_sets_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(!stream.nodelay().unwrap(), "sockets start with Nagle on");
        let local = stream.local_addr().unwrap().port();
        let peer = stream.peer_addr().unwrap().port();
        assert!(super::socket::set_nodelay(local, peer).unwrap());
        assert!(stream.nodelay().unwrap());
        assert!(
            !accepted.nodelay().unwrap(),
            "the other end (local and peer ports swapped) is left alone"
        );
        assert!(!super::socket::set_nodelay(local, peer.wrapping_add(1)).unwrap());
    }
}
