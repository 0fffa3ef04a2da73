//! Who may answer local consent over Windows' named pipe, and which pipe
//! a client may trust: pure rules, a table of cases below. (On Unix the
//! socket's rule is one comparison of user ids: `peer_allowed`.)

/// The SID of LocalSystem, which the agent's Windows service runs as.
pub const LOCAL_SYSTEM: &str = "S-1-5-18";

/// The SID of the Administrators group, the owner of what LocalSystem and
/// elevated administrators create.
pub const ADMINISTRATORS: &str = "S-1-5-32-544";

/// Whether a pipe client may answer the agent's requests: the agent's own
/// user, or an administrator (elevated), who could read the agent's key
/// anyway. With the agent a service, only administrators answer.
pub fn pipe_client_allowed(agent_sid: &str, client_sid: &str, client_administrator: bool) -> bool {
    client_sid == agent_sid || client_administrator
}

/// Whether `doorman consent` (and the settings window, and the tray),
/// running as `own_sid`, may talk to a pipe owned by `owner_sid` (whoever
/// created it): its own user's agent, or the agent's service (LocalSystem,
/// whose objects Administrators own), which only administrators can be.
/// Whoever else created the pipe first would read the answers and choose
/// what `list` shows.
pub fn pipe_server_allowed(own_sid: &str, owner_sid: &str) -> bool {
    owner_sid == own_sid || owner_sid == LOCAL_SYSTEM || owner_sid == ADMINISTRATORS
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "S-1-5-21-1-2-3-1001";
    const OTHER: &str = "S-1-5-21-1-2-3-1002";

    #[test]
    fn the_agents_user_and_administrators_answer() {
        let cases = [
            (OWNER, OWNER, false, true),
            (OWNER, OTHER, false, false),
            (OWNER, OTHER, true, true),
            (LOCAL_SYSTEM, OWNER, false, false),
            (LOCAL_SYSTEM, OWNER, true, true),
            (LOCAL_SYSTEM, LOCAL_SYSTEM, false, true),
        ];
        for (agent, client, administrator, allowed) in cases {
            assert_eq!(
                pipe_client_allowed(agent, client, administrator),
                allowed,
                "agent {agent}, client {client}, administrator {administrator}"
            );
        }
    }

    #[test]
    fn a_client_trusts_its_own_users_agent_or_the_service() {
        let cases = [
            (OWNER, OWNER, true),
            (OWNER, LOCAL_SYSTEM, true),
            (OWNER, ADMINISTRATORS, true),
            (OWNER, OTHER, false),
            (OTHER, OWNER, false),
            (LOCAL_SYSTEM, OWNER, false),
        ];
        for (own, server, allowed) in cases {
            assert_eq!(
                pipe_server_allowed(own, server),
                allowed,
                "own {own}, server {server}"
            );
        }
    }
}
