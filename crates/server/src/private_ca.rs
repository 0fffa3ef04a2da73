//! `doorman admin tls init`: a private CA and a server certificate it
//! signed, kept in `DATA_DIR/tls/`, which the server serves with when it is
//! given no other certificate. Agents and operators trust the CA file.
//!
//! Running it again keeps the CA (agents and operators already trust it)
//! and replaces the server certificate, e.g. for a new name.

use crate::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use ring::digest;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The directory under the data directory.
pub const DIR: &str = "tls";

/// Why the CA or certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{name:?} is not a valid DNS name for a certificate")]
    Name { name: String },
    #[error("give at least one --name or --ip for the server certificate")]
    NoName,
    #[error(
        "{} belongs to uid {uid}: run `tls init` as that account (sudo -u doorman doorman admin …), so that the server can read what it makes",
        path.display()
    )]
    NotTheOwner { path: PathBuf, uid: u32 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the CA in {path}: {message}; move the tls directory away to make a new CA")]
    BadCa { path: PathBuf, message: String },
    #[error("cannot make the certificate: {0}")]
    Make(String),
}

/// What `init` made or kept.
#[derive(Debug)]
pub struct Made {
    /// The CA certificate agents (`ca =`) and operators (`--ca`) trust.
    pub ca_file: PathBuf,
    /// SHA-256 of the CA certificate, as `AB:CD:…`.
    pub ca_fingerprint: String,
    /// Whether the CA was there already.
    pub kept_ca: bool,
    pub server: TlsFiles,
    /// The year the server certificate stops being valid.
    pub valid_until_year: i32,
}

/// The server certificate `init` left in `data_dir`, if any.
///
/// A file there that this process cannot reach is an error, with its path:
/// serving plain HTTP instead would send every secret in clear.
pub fn server_files(data_dir: &Path) -> Result<Option<TlsFiles>, (PathBuf, std::io::Error)> {
    let dir = data_dir.join(DIR);
    let ca = dir.join("ca.pem");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: ca.is_file().then_some(ca),
    };
    let mut found = 0;
    for path in [&files.cert, &files.key] {
        match std::fs::File::open(path) {
            Ok(_) => found += 1,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err((path.clone(), error)),
        }
    }
    match found {
        0 => Ok(None),
        2 => Ok(Some(files)),
        _ => {
            let missing = if files.cert.exists() {
                &files.key
            } else {
                &files.cert
            };
            Err((
                missing.clone(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "missing beside its pair"),
            ))
        }
    }
}

/// Makes (or keeps) the CA in `DATA_DIR/tls/` and a server certificate for
/// `names` and `ips` signed by it.
pub fn init(data_dir: &Path, names: &[String], ips: &[IpAddr]) -> Result<Made, CaError> {
    if names.is_empty() && ips.is_empty() {
        return Err(CaError::NoName);
    }
    for name in names {
        if rustls::pki_types::DnsName::try_from(name.as_str()).is_err()
            || name.parse::<IpAddr>().is_ok()
        {
            return Err(CaError::Name { name: name.clone() });
        }
    }
    refuse_anothers_data_dir(data_dir)?;
    let dir = data_dir.join(DIR);
    crate::private::create_dir(&dir).map_err(|source| CaError::Write {
        path: dir.clone(),
        source,
    })?;
    let (ca_pem_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let kept_ca = ca_key_path.is_file() && ca_pem_path.is_file();
    let ca_key = if kept_ca {
        let pem = std::fs::read_to_string(&ca_key_path).map_err(|e| CaError::BadCa {
            path: ca_key_path.clone(),
            message: e.to_string(),
        })?;
        KeyPair::from_pem(&pem).map_err(|e| CaError::BadCa {
            path: ca_key_path.clone(),
            message: e.to_string(),
        })?
    } else {
        KeyPair::generate().map_err(make)?
    };
    let this_year = this_year();
    let ca_params = ca_params(&ca_key, this_year);
    if !kept_ca {
        let ca_cert = ca_params.self_signed(&ca_key).map_err(make)?;
        write_private(&ca_key_path, ca_key.serialize_pem().as_bytes())?;
        write_private(&ca_pem_path, ca_cert.pem().as_bytes())?;
    }
    let ca_pem = std::fs::read(&ca_pem_path).map_err(|e| CaError::BadCa {
        path: ca_pem_path.clone(),
        message: e.to_string(),
    })?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| Ok(SanType::DnsName(name.clone().try_into().map_err(make)?)))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, CaError>>()?;
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| ips[0].to_string()),
    );
    params.distinguished_name = subject;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(this_year - 1, 12, 1);
    let valid_until_year = this_year + 2;
    params.not_after = rcgen::date_time_ymd(valid_until_year, 12, 31);
    let key = KeyPair::generate().map_err(make)?;
    let cert = params.signed_by(&key, &issuer).map_err(make)?;
    let server = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: Some(ca_pem_path.clone()),
    };
    write_private(&server.key, key.serialize_pem().as_bytes())?;
    write_private(&server.cert, cert.pem().as_bytes())?;
    Ok(Made {
        ca_fingerprint: fingerprint(&ca_pem),
        ca_file: ca_pem_path,
        kept_ca,
        server,
        valid_until_year,
    })
}

/// Refuses to work as root in a data directory another account owns (the
/// package's `/var/lib/doorman`): the files would be root's, which the
/// server cannot read, and giving them away afterwards would let that
/// account point root's `chown` anywhere through a symbolic link. Run as
/// the owner, the files are its own from the start.
fn refuse_anothers_data_dir(data_dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    match std::fs::symlink_metadata(data_dir) {
        Ok(owner) if owner.uid() != 0 => Err(CaError::NotTheOwner {
            path: data_dir.to_path_buf(),
            uid: owner.uid(),
        }),
        _ => Ok(()),
    }
}

/// The CA's parameters, the same every time for the same key: the name
/// carries a digest of the key, so two installations' CAs never share a
/// name, and a kept CA signs with the issuer name its certificate has.
fn ca_params(key: &KeyPair, this_year: i32) -> CertificateParams {
    let mut params = CertificateParams::default();
    let id = digest::digest(&digest::SHA256, key.public_key_raw());
    let id: String = id.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Doorman");
    name.push(DnType::CommonName, format!("Doorman private CA {id}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(this_year - 1, 12, 1);
    params.not_after = rcgen::date_time_ymd(this_year + 20, 12, 31);
    params.use_authority_key_identifier_extension = true;
    params
}

/// Whether `name` is a DNS name a certificate can carry (an IP address is
/// not: it goes in as an address).
pub fn is_dns_name(name: &str) -> bool {
    rustls::pki_types::DnsName::try_from(name).is_ok() && name.parse::<IpAddr>().is_err()
}

/// SHA-256 of the first certificate in a PEM file, `AB:CD:…`.
pub fn fingerprint(pem: &[u8]) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .map(|der| der.to_vec())
        .unwrap_or_default();
    digest::digest(&digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    crate::private::write_atomically(path, bytes).map_err(|source| CaError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn make(error: impl std::fmt::Display) -> CaError {
    CaError::Make(error.to_string())
}

fn this_year() -> i32 {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days to a civil year (proleptic Gregorian), close enough for a
    // validity window that starts a month early.
    1970 + i32::try_from(seconds / 31_556_952).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_names_and_one_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(init(dir.path(), &[], &[]), Err(CaError::NoName)));
        for bad in ["bad name", "-x.example", "203.0.113.5", ""] {
            let error = init(dir.path(), &[bad.to_string()], &[]).unwrap_err();
            assert!(matches!(error, CaError::Name { .. }), "{bad}: {error}");
        }
        assert!(
            !dir.path().join(DIR).exists(),
            "nothing written for bad input"
        );
    }

    #[test]
    fn a_second_init_keeps_the_ca_and_replaces_the_server_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path(), &["doorman.example.com".into()], &[]).unwrap();
        assert!(!first.kept_ca);
        let cert = std::fs::read(&first.server.cert).unwrap();
        let second = init(dir.path(), &["other.example.com".into()], &[]).unwrap();
        assert!(second.kept_ca);
        assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
        assert_ne!(std::fs::read(&second.server.cert).unwrap(), cert);
        assert_eq!(first.ca_fingerprint.len(), 32 * 3 - 1);
    }
}
