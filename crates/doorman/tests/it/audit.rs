//! `doorman admin audit` through the binary: listing, and pruning by age
//! with bad input refused.

use doorman_test_support::process::{after_using_line, output_of, run};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_listed_and_pruned_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--data-dir", data];
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = admin(&["operator", "add", "alice", "--computers", "*", "--create"]);
    output_of(
        DOORMAN,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let args = admin(&["audit"]);
    let listed = output_of(
        DOORMAN,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains("operator_added"), "{listed}");

    // Nothing is a day old yet.
    let args = admin(&["audit", "prune", "--older-than", "1"]);
    let (code, _, err) = run(
        DOORMAN,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        after_using_line(&err).trim(),
        "deleted 0 audit events older than 1 days"
    );
    for bad in ["0", "-3", "soon"] {
        let args = admin(&["audit", "prune", "--older-than", bad]);
        let (code, _, err) = run(
            DOORMAN,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("--older-than"), "{err}");
    }
    let args = admin(&["audit", "--json"]);
    let listed = output_of(
        DOORMAN,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(
        listed.lines().count(),
        2,
        "the trail is unchanged: {listed}"
    );
}
