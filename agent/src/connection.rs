//! An authenticated connection as the request handlers see it: the channel, over TLS, and
//! the operator whose key opened it.

use common::channel::Channel;
use common::identity::authorized_keys::{Action, Entry};
use common::identity::keys::PublicKey;
use tokio::net::TcpStream;

/// The byte stream below every channel: TLS over TCP.
pub type Stream = common::handshake::ServerStream<TcpStream>;

/// An authenticated connection.
pub type Connection = Channel<Stream>;

/// The operator on the other end: their key, and what its `authorized_keys` line lets it
/// do. Taken when the connection opens; a later change to the file applies to the next
/// connection.
#[derive(Debug, Clone)]
pub struct Operator {
    key: PublicKey,
    line: usize,
    permitted: Vec<Action>,
}

impl Operator {
    /// The operator allowed by `entry`.
    pub fn new(entry: &Entry) -> Operator {
        Operator {
            key: entry.key().clone(),
            line: entry.line(),
            permitted: entry.permitted(),
        }
    }

    /// `SHA256:...` of the operator's key, as the logs name it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }

    /// Whether the key's `permit=` allows `action`.
    pub fn permits(&self, action: Action) -> bool {
        self.permitted.contains(&action)
    }

    /// What the operator is told when `action` is not permitted.
    pub fn refusal(&self, action: Action) -> String {
        let allowed: Vec<&str> = self.permitted.iter().map(|action| action.name()).collect();
        format!(
            "key {} may not {} on this host: permit= on line {} of authorized_keys allows {}",
            self.fingerprint(),
            action.name(),
            self.line,
            if allowed.is_empty() {
                "nothing".to_owned()
            } else {
                allowed.join(",")
            }
        )
    }
}
