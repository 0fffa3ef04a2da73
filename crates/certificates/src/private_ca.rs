//! `doorman admin tls init`: a private CA and a server certificate it
//! signed, kept in `DATA_DIR/tls/` (`ca.pem` and `ca.key`, `server.pem`
//! and its key `tls.key`), which the server serves with when it is given
//! no other certificate. Agents and operators trust the CA file.
//!
//! Running it again keeps the CA (agents and operators already trust it)
//! and issues a new server certificate for every name given so far: this
//! run's and those of the certificate there (`names` reads them).
//! `--replace` starts over: a new CA, and this run's names only.
//!
//! The certificate's key was once `tls/server.key`, the name the links'
//! key has in `DATA_DIR`; [`server_files`] and [`init`] rename it where an
//! older release left it.

use crate::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use ring::digest;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod names;

/// The directory under the data directory.
pub const DIR: &str = "tls";
/// The server certificate, in [`DIR`].
pub const CERT: &str = "server.pem";
/// The server certificate's private key, in [`DIR`].
pub const KEY: &str = "tls.key";
/// Where it was kept before (issue 31): the name the links' key has in
/// the data directory (`DATA_DIR/server.key`) too.
pub const OLD_KEY: &str = "server.key";

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
    #[error(
        "cannot use the CA in {path}: {message}; pass --replace to make a new CA (every agent and operator then needs the new ca.pem)"
    )]
    BadCa { path: PathBuf, message: String },
    #[error(
        "cannot read the names of the server certificate {path}: {message}; remove it to issue one for the names given now, or pass --replace to start over"
    )]
    BadCertificate { path: PathBuf, message: String },
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
    /// Every name the server certificate is for: DNS names, then addresses.
    pub names: Vec<String>,
}

/// The server certificate `init` left in `data_dir`, if any (its key
/// renamed from its old name first, if need be).
///
/// A file there that this process cannot reach is an error, with its path:
/// serving plain HTTP instead would send every secret in clear.
pub fn server_files(data_dir: &Path) -> Result<Option<TlsFiles>, (PathBuf, std::io::Error)> {
    let dir = data_dir.join(DIR);
    let ca = dir.join("ca.pem");
    let files = TlsFiles {
        cert: dir.join(CERT),
        key: current_key(&dir),
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

/// The server certificate's key in `dir`, renamed from [`OLD_KEY`] first
/// if an older release left it there. A rename this account may not make
/// (a directory it may read but not change) leaves the key served under
/// its old name, which works as before.
fn current_key(dir: &Path) -> PathBuf {
    match rename_old_key(dir) {
        Ok(_) => dir.join(KEY),
        Err(error) => {
            let old = dir.join(OLD_KEY);
            if !old.exists() {
                return dir.join(KEY);
            }
            tracing::warn!(
                %error,
                path = %old.display(),
                "cannot rename the TLS key to tls.key; serving with it under its old name"
            );
            old
        }
    }
}

/// Renames `tls/server.key` to `tls/tls.key` when only the old name is
/// there: one rename, so that a reader finds the key under one name or
/// the other, never under neither. Whether it renamed.
fn rename_old_key(dir: &Path) -> std::io::Result<bool> {
    let (old, new) = (dir.join(OLD_KEY), dir.join(KEY));
    match std::fs::symlink_metadata(&new) {
        Ok(_) => return Ok(false),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    match std::fs::rename(&old, &new) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Makes (or keeps) the CA in `DATA_DIR/tls/` and a server certificate
/// signed by it for `names` and `ips` and those of the certificate there;
/// with `replace`, a new CA and a certificate for `names` and `ips` only.
pub fn init(
    data_dir: &Path,
    names: &[String],
    ips: &[IpAddr],
    replace: bool,
) -> Result<Made, CaError> {
    if let Some(name) = names.iter().find(|name| !is_dns_name(name)) {
        return Err(CaError::Name { name: name.clone() });
    }
    refuse_anothers_data_dir(data_dir)?;
    let dir = data_dir.join(DIR);
    let cert_path = dir.join(CERT);
    let (names, ips) = covered(&cert_path, replace, names, ips)?;
    if names.is_empty() && ips.is_empty() {
        return Err(CaError::NoName);
    }
    doorman_store::private::create_dir(&dir).map_err(|source| CaError::Write {
        path: dir.clone(),
        source,
    })?;
    rename_old_key(&dir).map_err(|source| CaError::Write {
        path: dir.join(OLD_KEY),
        source,
    })?;
    let this_year = this_year();
    let ca = signing_ca(&dir, replace, this_year)?;
    let valid_until_year = this_year + 2;
    let (cert, key) = server_certificate(&ca.issuer, &names, &ips, this_year, valid_until_year)?;
    let server = TlsFiles {
        cert: cert_path,
        key: dir.join(KEY),
        ca: Some(ca.file.clone()),
    };
    write_private(&server.key, key.as_bytes())?;
    write_private(&server.cert, cert.as_bytes())?;
    Ok(Made {
        ca_fingerprint: fingerprint(&ca.pem),
        ca_file: ca.file,
        kept_ca: ca.kept,
        server,
        valid_until_year,
        names: names
            .into_iter()
            .chain(ips.iter().map(ToString::to_string))
            .collect(),
    })
}

/// The names the new certificate is for: those of the certificate at
/// `cert` (none with `replace`, or when there is none), then the new ones,
/// each once (DNS names compared without case, as DNS does).
fn covered(
    cert: &Path,
    replace: bool,
    names: &[String],
    ips: &[IpAddr],
) -> Result<(Vec<String>, Vec<IpAddr>), CaError> {
    let (mut all_names, mut all_ips) = if replace {
        (Vec::new(), Vec::new())
    } else {
        names_of(cert)?
    };
    for name in names {
        if !all_names.iter().any(|had| had.eq_ignore_ascii_case(name)) {
            all_names.push(name.clone());
        }
    }
    for ip in ips {
        if !all_ips.contains(ip) {
            all_ips.push(*ip);
        }
    }
    Ok((all_names, all_ips))
}

/// The names of the certificate at `path`; none if there is no file.
fn names_of(path: &Path) -> Result<(Vec<String>, Vec<IpAddr>), CaError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |message: String| CaError::BadCertificate {
        path: path.to_path_buf(),
        message,
    };
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Vec::new()));
        }
        Err(error) => return Err(bad(error.to_string())),
    };
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .and_then(|der| names::alt_names(&der))
        .ok_or_else(|| bad("not a PEM certificate this can read".to_string()))
}

/// The CA that signs: the one in `dir`, or a new one written there.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    file: PathBuf,
    /// The CA certificate's PEM, as agents and operators get it.
    pem: Vec<u8>,
    kept: bool,
}

/// The CA in `dir`, kept unless `replace` or there is none.
fn signing_ca(dir: &Path, replace: bool, this_year: i32) -> Result<Ca, CaError> {
    let (pem_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let kept = !replace && key_path.is_file() && pem_path.is_file();
    let key = if kept {
        let pem = std::fs::read_to_string(&key_path).map_err(|e| CaError::BadCa {
            path: key_path.clone(),
            message: e.to_string(),
        })?;
        KeyPair::from_pem(&pem).map_err(|e| CaError::BadCa {
            path: key_path.clone(),
            message: e.to_string(),
        })?
    } else {
        KeyPair::generate().map_err(make)?
    };
    let params = ca_params(&key, this_year);
    if !kept {
        let cert = params.self_signed(&key).map_err(make)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_private(&pem_path, cert.pem().as_bytes())?;
    }
    let pem = std::fs::read(&pem_path).map_err(|e| CaError::BadCa {
        path: pem_path.clone(),
        message: e.to_string(),
    })?;
    Ok(Ca {
        issuer: Issuer::new(params, key),
        file: pem_path,
        pem,
        kept,
    })
}

/// A server certificate for `names` and `ips` with a key of its own,
/// signed by `issuer`: (certificate PEM, key PEM).
fn server_certificate(
    issuer: &Issuer<'static, KeyPair>,
    names: &[String],
    ips: &[IpAddr],
    this_year: i32,
    valid_until_year: i32,
) -> Result<(String, String), CaError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| Ok(SanType::DnsName(name.clone().try_into().map_err(make)?)))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, CaError>>()?;
    let common_name = names
        .first()
        .cloned()
        .or_else(|| ips.first().map(ToString::to_string))
        .ok_or(CaError::NoName)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, common_name);
    params.distinguished_name = subject;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(this_year - 1, 12, 1);
    params.not_after = rcgen::date_time_ymd(valid_until_year, 12, 31);
    let key = KeyPair::generate().map_err(make)?;
    let cert = params.signed_by(&key, issuer).map_err(make)?;
    Ok((cert.pem(), key.serialize_pem()))
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
    doorman_store::private::write_atomically(path, bytes).map_err(|source| CaError::Write {
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
        assert!(matches!(
            init(dir.path(), &[], &[], false),
            Err(CaError::NoName)
        ));
        for bad in ["bad name", "-x.example", "203.0.113.5", ""] {
            let error = init(dir.path(), &[bad.to_string()], &[], false).unwrap_err();
            assert!(matches!(error, CaError::Name { .. }), "{bad}: {error}");
        }
        assert!(
            !dir.path().join(DIR).exists(),
            "nothing written for bad input"
        );
    }

    #[test]
    fn a_second_init_keeps_the_ca_and_adds_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path(), &["doorman.example.com".into()], &[], false).unwrap();
        assert!(!first.kept_ca);
        let cert = std::fs::read(&first.server.cert).unwrap();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let second = init(dir.path(), &["other.example.com".into()], &[ip], false).unwrap();
        assert!(second.kept_ca);
        assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
        assert_ne!(std::fs::read(&second.server.cert).unwrap(), cert);
        assert_eq!(first.ca_fingerprint.len(), 32 * 3 - 1);
        let all = ["doorman.example.com", "other.example.com", "10.0.0.5"];
        assert_eq!(second.names, all);
        // A name given again is not repeated; no name at all renews.
        let again = init(dir.path(), &["DOORMAN.example.com".into()], &[ip], false).unwrap();
        assert_eq!(again.names, all);
        let renewed = init(dir.path(), &[], &[], false).unwrap();
        assert_eq!(renewed.names, all);
        assert_eq!(renewed.ca_fingerprint, first.ca_fingerprint);
    }

    #[test]
    fn replace_starts_over_with_a_new_ca_and_the_names_given_now() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path(), &["doorman.example.com".into()], &[], false).unwrap();
        let replaced = init(dir.path(), &["new.example.com".into()], &[], true).unwrap();
        assert!(!replaced.kept_ca);
        assert_ne!(replaced.ca_fingerprint, first.ca_fingerprint);
        assert_eq!(replaced.names, ["new.example.com"]);
        assert!(matches!(
            init(dir.path(), &[], &[], true),
            Err(CaError::NoName)
        ));
    }

    #[test]
    fn a_certificate_whose_names_cannot_be_read_is_not_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path(), &["doorman.example.com".into()], &[], false).unwrap();
        std::fs::write(&first.server.cert, "not a certificate").unwrap();
        let error = init(dir.path(), &["b.example.com".into()], &[], false).unwrap_err();
        assert!(matches!(error, CaError::BadCertificate { .. }), "{error}");
        assert!(error.to_string().contains("--replace"), "{error}");
        init(dir.path(), &["b.example.com".into()], &[], true).unwrap();
    }

    #[test]
    fn the_key_an_older_release_kept_as_server_key_is_renamed_once() {
        let dir = tempfile::tempdir().unwrap();
        let made = init(dir.path(), &["doorman.example.com".into()], &[], false).unwrap();
        let tls = dir.path().join(DIR);
        let (old, new) = (tls.join(OLD_KEY), tls.join(KEY));
        assert_eq!(made.server.key, new);
        let key = std::fs::read(&new).unwrap();
        // The layout an older release left: the server renames and serves.
        std::fs::rename(&new, &old).unwrap();
        let files = server_files(dir.path()).unwrap().unwrap();
        assert_eq!(files.key, new);
        assert_eq!(std::fs::read(&new).unwrap(), key);
        assert!(!old.exists());
        // So does `init`, which then issues a new key under the new name.
        std::fs::rename(&new, &old).unwrap();
        init(dir.path(), &[], &[], false).unwrap();
        assert!(new.exists() && !old.exists());
        // With both names there, the old one is left alone.
        std::fs::write(&old, "stale").unwrap();
        assert_eq!(server_files(dir.path()).unwrap().unwrap().key, new);
        assert_eq!(std::fs::read(&old).unwrap(), b"stale");
    }
}
