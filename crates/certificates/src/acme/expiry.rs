//! When a certificate stops being valid: its `notAfter`, read from the DER
//! with the few lines of ASN.1 that takes (RFC 5280 §4.1), rather than a
//! whole X.509 parser.

/// `notAfter` of a DER certificate, in milliseconds since the epoch.
pub fn not_after_millis(der: &[u8]) -> Option<i64> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, when present.
    if rest.first() == Some(&0xA0) {
        rest = element(rest, 0xA0)?.1;
    }
    rest = element(rest, 0x02)?.1; // serialNumber
    rest = element(rest, 0x30)?.1; // signature algorithm
    rest = element(rest, 0x30)?.1; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let after_not_before = skip_time(validity)?;
    let (tag, value) = (after_not_before.first()?, after_not_before);
    let (time, _) = element(value, *tag)?;
    parse_time(*tag, time)
}

/// The contents of the element at the start of `input` if it has `tag`,
/// and what follows it. (`private_ca`'s names read certificates with it too.)
pub(crate) fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = *input.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let octets = usize::from(first & 0x7F);
        if octets == 0 || octets > 4 {
            return None;
        }
        let mut length = 0usize;
        for i in 0..octets {
            length = (length << 8) | usize::from(*input.get(2 + i)?);
        }
        (length, 2 + octets)
    };
    let end = header.checked_add(length)?;
    Some((input.get(header..end)?, input.get(end..)?))
}

fn skip_time(input: &[u8]) -> Option<&[u8]> {
    let tag = *input.first()?;
    if tag != 0x17 && tag != 0x18 {
        return None;
    }
    Some(element(input, tag)?.1)
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        _ => (digits(0..4)?, 4),
    };
    if text.len() != rest + 10 {
        return None;
    }
    let month = digits(rest..rest + 2)?;
    let day = digits(rest + 2..rest + 4)?;
    let hour = digits(rest + 4..rest + 6)?;
    let minute = digits(rest + 6..rest + 8)?;
    let second = digits(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(year: i32, month: u8, day: u8, seconds: u64) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_after =
            rcgen::date_time_ymd(year, month, day) + std::time::Duration::from_secs(seconds);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // 2030-06-15T12:34:56Z, UTCTime (before 2050).
        let der = certificate(2030, 6, 15, 45_296);
        assert_eq!(not_after_millis(&der), Some(1_907_757_296_000));
        // 2060-01-01, GeneralizedTime (2050 and after).
        let der = certificate(2060, 1, 1, 0);
        assert_eq!(not_after_millis(&der), Some(2_840_140_800_000));
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01\x00",
        ] {
            assert_eq!(not_after_millis(bytes), None);
        }
    }
}
