use super::soft::SoftPasskey;
use super::*;

const ORIGIN: &str = "https://doorman.example.com";

fn parts<'a>(request_id: &'a str, service: &'a str) -> ChallengeParts<'a> {
    ChallengeParts {
        request_id,
        computer: "office-pc",
        operator: "alice",
        service,
        expires_at: 1_700_000_000_000,
        nonce: b"nonce-of-the-agent",
    }
}

fn expected(challenge: &[u8]) -> Expected<'_> {
    Expected {
        challenge,
        origin: ORIGIN,
        rp_id: "doorman.example.com",
    }
}

#[test]
fn an_assertion_for_the_request_verifies_and_its_counter_moves_on() {
    let mut key = SoftPasskey::new(ORIGIN);
    let pinned = key.pinned("owner@example.com");
    let wanted = challenge(&parts("r1", r#"{"command":{"argv":["true"]}}"#));
    let assertion = key.approve(&parts("r1", r#"{"command":{"argv":["true"]}}"#));
    assert_eq!(verify(&assertion, &pinned, &expected(&wanted), 0), Ok(1));
    // The same assertion again: its counter did not move.
    assert_eq!(
        verify(&assertion, &pinned, &expected(&wanted), 1),
        Err(PasskeyError::CounterWentBack { seen: 1, got: 1 })
    );
}

#[test]
fn every_part_of_the_request_is_bound() {
    let base = parts("r1", "shell");
    let challenges = [
        challenge(&base),
        challenge(&ChallengeParts {
            request_id: "r2",
            ..base.clone()
        }),
        challenge(&ChallengeParts {
            computer: "other",
            ..base.clone()
        }),
        challenge(&ChallengeParts {
            operator: "bob",
            ..base.clone()
        }),
        challenge(&ChallengeParts {
            service: "forward",
            ..base.clone()
        }),
        challenge(&ChallengeParts {
            expires_at: 1,
            ..base.clone()
        }),
        challenge(&ChallengeParts {
            nonce: b"other",
            ..base.clone()
        }),
        // Lengths are encoded: moving a byte between fields changes it.
        challenge(&ChallengeParts {
            request_id: "r1s",
            service: "hell",
            ..base.clone()
        }),
    ];
    for (i, a) in challenges.iter().enumerate() {
        for b in &challenges[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn forgeries_are_refused_each_for_its_reason() {
    let mut key = SoftPasskey::new(ORIGIN);
    let pinned = key.pinned("owner@example.com");
    let wanted = challenge(&parts("r1", "shell"));
    let for_other_request = key.approve(&parts("r2", "shell"));
    assert_eq!(
        verify(&for_other_request, &pinned, &expected(&wanted), 0),
        Err(PasskeyError::WrongChallenge)
    );
    let stranger = SoftPasskey::new(ORIGIN).pinned("owner@example.com");
    let good = key.approve(&parts("r1", "shell"));
    assert_eq!(
        verify(&good, &stranger, &expected(&wanted), 0),
        Err(PasskeyError::UnknownCredential)
    );
    // A key with the pinned id but another public key: the signature fails.
    let mut impostor = SoftPasskey::new(ORIGIN);
    impostor.id = key.id.clone();
    let forged = impostor.approve(&parts("r1", "shell"));
    assert_eq!(
        verify(&forged, &pinned, &expected(&wanted), 0),
        Err(PasskeyError::BadSignature)
    );
    let mut phishing = SoftPasskey::new("https://doorman.example.com.evil.example");
    phishing.id = key.id.clone();
    let phished = phishing.approve(&parts("r1", "shell"));
    assert!(matches!(
        verify(&phished, &pinned, &expected(&wanted), 0),
        Err(PasskeyError::WrongOrigin(_))
    ));
    let mut tampered = key.approve(&parts("r1", "shell"));
    tampered.authenticator_data.0[32] &= !0x04;
    assert_eq!(
        verify(&tampered, &pinned, &expected(&wanted), 0),
        Err(PasskeyError::NoUserVerification)
    );
    let mut tampered = key.approve(&parts("r1", "shell"));
    tampered.authenticator_data.0[0] ^= 1;
    assert_eq!(
        verify(&tampered, &pinned, &expected(&wanted), 0),
        Err(PasskeyError::WrongRelyingParty)
    );
    let mut tampered = key.approve(&parts("r1", "shell"));
    tampered.authenticator_data.0.truncate(20);
    assert_eq!(
        verify(&tampered, &pinned, &expected(&wanted), 0),
        Err(PasskeyError::AuthenticatorData)
    );
}

#[test]
fn a_registration_yields_the_authenticators_key() {
    let key = SoftPasskey::new(ORIGIN);
    let challenge = [7u8; 32];
    let (object, client) = key.register(&challenge);
    let made = read_registration(&object, &client, &expected(&challenge)).unwrap();
    assert_eq!(made.id, key.id);
    assert_eq!(made.public_key, key.public_key());
    assert_eq!(made.public_key.fingerprint().len(), 16 * 3 - 1);
    assert!(matches!(
        read_registration(&object, &client, &expected(&[8u8; 32])),
        Err(PasskeyError::WrongChallenge)
    ));
    assert!(matches!(
        read_registration(b"\xff", &client, &expected(&challenge)),
        Err(PasskeyError::Registration(_))
    ));
}

#[test]
fn keys_and_assertions_travel_as_base64url_json() {
    let mut key = SoftPasskey::new(ORIGIN);
    let pinned = key.pinned("owner@example.com");
    let text = serde_json::to_string(&pinned).unwrap();
    assert!(text.contains("\"alg\":\"es256\""), "{text}");
    assert_eq!(
        serde_json::from_str::<PinnedPasskey>(&text).unwrap(),
        pinned
    );
    let assertion = key.assert(b"x");
    let text = serde_json::to_string(&assertion).unwrap();
    assert!(!text.contains('='), "{text}");
    assert_eq!(serde_json::from_str::<Assertion>(&text).unwrap(), assertion);
}
