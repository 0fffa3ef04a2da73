//! Masking of recipient addresses shown to operators: enough to recognise
//! whose approval is awaited, not enough to harvest addresses.

/// `owner@example.com` becomes `o***@example.com`; a value without `@` keeps
/// only its first character.
pub fn mask_address(address: &str) -> String {
    let address = address.trim();
    // A display-name form such as `Owner <owner@example.com>` masks the address part.
    let address = match (address.rfind('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => &address[open + 1..close],
        _ => address,
    };
    let (local, domain) = match address.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (address, None),
    };
    let first: String = local.chars().take(1).collect();
    match domain {
        Some(domain) => format!("{first}***@{domain}"),
        None => format!("{first}***"),
    }
}

#[cfg(test)]
mod tests {
    use super::mask_address;

    #[test]
    fn masks_local_part_and_keeps_domain() {
        assert_eq!(mask_address("owner@example.com"), "o***@example.com");
        assert_eq!(mask_address("Owner <it@example.org>"), "i***@example.org");
        assert_eq!(mask_address("x"), "x***");
        assert_eq!(mask_address(""), "***");
    }
}
