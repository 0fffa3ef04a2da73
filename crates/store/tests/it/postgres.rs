//! Every guarantee of the other modules again, on a real PostgreSQL
//! server.

use crate::decisions::{
    a_decision_at_or_after_expiry_never_wins, a_settled_request_never_changes_again,
    duplicate_names_and_second_sessions_are_named_errors,
    many_simultaneous_decisions_have_exactly_one_winner,
    revoking_a_secret_cancels_what_is_pending_with_it,
    simultaneous_approvals_reach_a_quorum_exactly_once,
};
use crate::names::{
    a_name_removed_and_added_again_inherits_nothing,
    leftovers_of_removed_names_are_not_inherited_across_the_upgrade,
    operators_from_before_access_rules_keep_reaching_everything,
};
use crate::upkeep::{
    reopening_applies_no_migration_twice_and_keeps_data,
    the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace,
};
use doorman_store::Store;
use doorman_test_support::postgres::Postgres;

/// Every guarantee of the other modules, on a real PostgreSQL server
/// (one per run: each scenario gets a database of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_the_same_guarantees_hold() {
    let postgres = Postgres::start().await;
    let open = async || Store::open(&postgres.new_database().await).await.unwrap();
    a_decision_at_or_after_expiry_never_wins(open().await).await;
    many_simultaneous_decisions_have_exactly_one_winner(open().await).await;
    simultaneous_approvals_reach_a_quorum_exactly_once(open().await).await;
    a_settled_request_never_changes_again(open().await).await;
    duplicate_names_and_second_sessions_are_named_errors(open().await).await;
    revoking_a_secret_cancels_what_is_pending_with_it(open().await).await;
    the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace(open().await).await;
    reopening_applies_no_migration_twice_and_keeps_data(&postgres.new_database().await).await;
    operators_from_before_access_rules_keep_reaching_everything(&postgres.new_database().await)
        .await;
    a_name_removed_and_added_again_inherits_nothing(open().await).await;
    leftovers_of_removed_names_are_not_inherited_across_the_upgrade(&postgres.new_database().await)
        .await;
}
