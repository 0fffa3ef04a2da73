//! The secrets of one forwarded connection's records: each tunnel's own,
//! derived from the session's tunnel secret, a fresh salt from each end
//! and the target the operator asked for, so that no two tunnels share
//! keys even if the server gives two the same id, a tunnel the server
//! replays does not open, and one it sends to another target than the
//! operator's does not either.
//!
//! The secrets are TLS 1.3 traffic secrets for AES-256-GCM with SHA-384
//! (48 bytes), which the relay's record layer seals and opens.

use ring::hkdf;
use zeroize::Zeroizing;

/// The length of each end's salt.
pub const SALT_LEN: usize = 32;
/// The length of a traffic secret (SHA-384's output).
pub const SECRET_LEN: usize = 48;
const OPERATOR_TO_COMPUTER: &[u8] = b"doorman e2e v1 tunnel operator to computer";
const COMPUTER_TO_OPERATOR: &[u8] = b"doorman e2e v1 tunnel computer to operator";

/// The session's secret for its tunnels.
#[derive(Clone)]
pub struct TunnelSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for TunnelSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelSecret(MASKED)")
    }
}

/// One tunnel's two traffic secrets.
pub struct TunnelSecrets {
    pub operator_to_computer: Zeroizing<Vec<u8>>,
    pub computer_to_operator: Zeroizing<Vec<u8>>,
}

/// A fresh salt for one end of one tunnel.
pub fn salt() -> Result<[u8; SALT_LEN], ring::error::Unspecified> {
    ring::rand::generate(crate::rng()).map(|salt| salt.expose())
}

impl TunnelSecret {
    pub(crate) fn new(secret: Zeroizing<[u8; 32]>) -> Self {
        TunnelSecret(secret)
    }

    /// The secrets of the tunnel to `target` whose ends sent these salts.
    pub fn tunnel(
        &self,
        operator_salt: &[u8; SALT_LEN],
        computer_salt: &[u8; SALT_LEN],
        target: &str,
    ) -> TunnelSecrets {
        let salt = [
            operator_salt.as_slice(),
            computer_salt.as_slice(),
            target.as_bytes(),
        ]
        .concat();
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA384, &salt).extract(self.0.as_slice());
        let mut up = Zeroizing::new(vec![0u8; SECRET_LEN]);
        let mut down = Zeroizing::new(vec![0u8; SECRET_LEN]);
        // Expanding 48 bytes with SHA-384 cannot fail (the limit is 255 × 48).
        let _ = crate::handshake::expand(&prk, OPERATOR_TO_COMPUTER, &mut up);
        let _ = crate::handshake::expand(&prk, COMPUTER_TO_OPERATOR, &mut down);
        TunnelSecrets {
            operator_to_computer: up,
            computer_to_operator: down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_salt_makes_other_secrets() {
        let secret = TunnelSecret::new(Zeroizing::new([3; 32]));
        let a = salt().unwrap();
        let b = salt().unwrap();
        let one = secret.tunnel(&a, &b, "127.0.0.1:5900");
        let again = secret.tunnel(&a, &b, "127.0.0.1:5900");
        assert_eq!(*one.operator_to_computer, *again.operator_to_computer);
        assert_ne!(*one.operator_to_computer, *one.computer_to_operator);
        let other = secret.tunnel(&a, &salt().unwrap(), "127.0.0.1:5900");
        assert_ne!(*one.operator_to_computer, *other.operator_to_computer);
        let elsewhere = secret.tunnel(&a, &b, "127.0.0.1:22");
        assert_ne!(*one.operator_to_computer, *elsewhere.operator_to_computer);
        assert_eq!(one.operator_to_computer.len(), SECRET_LEN);
    }
}
