//! The names a server certificate covers (its subjectAltName: DNS names
//! and IP addresses), read from the DER with the few lines of ASN.1 that
//! takes (RFC 5280 §4.1, §4.2.1.6), so that `tls init` run again adds
//! names to those of the certificate there instead of replacing them.

use crate::acme::expiry::element;
use std::net::IpAddr;

/// The subjectAltName extension's OID, 2.5.29.17, as DER contents.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];
/// A GeneralName's context tags: `[2] dNSName`, `[7] iPAddress` (implicit).
const DNS_NAME: u8 = 0x82;
const IP_ADDRESS: u8 = 0x87;

/// The DNS names and IP addresses a DER certificate is for, in its order;
/// `None` if it is not a certificate this can read.
pub(super) fn alt_names(der: &[u8]) -> Option<(Vec<String>, Vec<IpAddr>)> {
    let mut found = (Vec::new(), Vec::new());
    let Some(mut extensions) = extensions_of(der)? else {
        return Some(found);
    };
    while !extensions.is_empty() {
        let (extension, next) = element(extensions, 0x30)?;
        extensions = next;
        let (oid, mut value) = element(extension, 0x06)?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        // `critical BOOLEAN DEFAULT FALSE`, when present.
        if value.first() == Some(&0x01) {
            value = element(value, 0x01)?.1;
        }
        let (octets, _) = element(value, 0x04)?;
        let (mut general_names, _) = element(octets, 0x30)?;
        while let Some(&tag) = general_names.first() {
            let (content, next) = element(general_names, tag)?;
            general_names = next;
            match tag {
                DNS_NAME => found.0.push(std::str::from_utf8(content).ok()?.to_string()),
                IP_ADDRESS => found.1.push(ip_address(content)?),
                // Other kinds (email, URI…): `tls init` makes none.
                _ => {}
            }
        }
    }
    Some(found)
}

/// The contents of the certificate's `extensions` (a SEQUENCE of
/// Extension), `Some(None)` when it has none.
fn extensions_of(der: &[u8]) -> Option<Option<&[u8]>> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, when present.
    if rest.first() == Some(&0xA0) {
        rest = element(rest, 0xA0)?.1;
    }
    rest = element(rest, 0x02)?.1; // serialNumber
    // signature, issuer, validity, subject, subjectPublicKeyInfo
    for _ in 0..5 {
        rest = element(rest, 0x30)?.1;
    }
    // issuerUniqueID [1] and subjectUniqueID [2], when present.
    for tag in [0x81, 0x82] {
        if rest.first() == Some(&tag) {
            rest = element(rest, tag)?.1;
        }
    }
    if rest.first() != Some(&0xA3) {
        return Some(None);
    }
    let (explicit, _) = element(rest, 0xA3)?;
    let (extensions, _) = element(explicit, 0x30)?;
    Some(Some(extensions))
}

fn ip_address(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dns_names_and_addresses_a_certificate_is_for() {
        let mut params = rcgen::CertificateParams::new(vec![
            "doorman.internal".to_string(),
            "127.0.0.1".to_string(),
            "other.example.com".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "doorman.internal");
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let (names, ips) = alt_names(&der).unwrap();
        assert_eq!(names, ["doorman.internal", "other.example.com"]);
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["127.0.0.1", "::1"]);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01\x00",
        ] {
            assert_eq!(alt_names(bytes), None);
        }
    }
}
