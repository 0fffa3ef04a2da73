//! How a session ends, as the server tells it: the server's own reasons to
//! end one ([`Stop`]), and what a relay's end ([`Ending::of`]) says to the
//! audit trail and, as the last frame of the session connection
//! ([`SessionMessage::Ended`]), to the operator. The words are the server's:
//! the client prints them and takes its exit status from the cause.

use super::relay::RelayEnd;
use doorman_core::Revoked;
use doorman_wire::message::{EndCause, Service, SessionEnd, SessionMessage};

/// Why the server ends a session that neither side ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The computer's `max_session_seconds`, this many.
    TimeLimit { secs: u32 },
    /// The operator's token or grant, or the computer, was revoked.
    Revoked(Revoked),
    /// The operator resumed the request on another connection.
    Superseded,
    /// The server is stopping.
    ServerStopping,
}

impl Stop {
    fn cause(self) -> EndCause {
        match self {
            Stop::TimeLimit { .. } => EndCause::TimeLimit,
            Stop::Revoked(Revoked::Access) => EndCause::AccessRevoked,
            Stop::Revoked(Revoked::OperatorToken) => EndCause::TokenRevoked,
            Stop::Revoked(Revoked::Computer) => EndCause::ComputerRemoved,
            Stop::Superseded => EndCause::Superseded,
            Stop::ServerStopping => EndCause::ServerStopping,
        }
    }

    /// The `session_ended` audit event's detail.
    fn detail(self) -> String {
        match self {
            Stop::TimeLimit { .. } => "ended: time limit",
            Stop::Revoked(Revoked::Access) => {
                "ended: the operator's access to this computer was revoked"
            }
            Stop::Revoked(Revoked::Computer) => "ended: the computer was removed",
            Stop::Revoked(Revoked::OperatorToken) => {
                "ended: the operator's token was replaced or removed"
            }
            Stop::Superseded => "ended: the operator resumed on another connection",
            Stop::ServerStopping => "ended by server shutdown",
        }
        .to_string()
    }

    /// What the operator is told of a session on `computer`.
    fn words(self, computer: &str) -> String {
        match self {
            Stop::TimeLimit { secs } => {
                format!("the session reached {computer}'s time limit of {secs} s")
            }
            Stop::Revoked(Revoked::Access) => format!("your access to {computer} was revoked"),
            Stop::Revoked(Revoked::OperatorToken) => {
                "your operator token was replaced or removed".to_string()
            }
            Stop::Revoked(Revoked::Computer) => {
                format!("computer {computer:?} was removed from the server")
            }
            Stop::Superseded => {
                "the request was resumed on another connection; this one is closed".to_string()
            }
            Stop::ServerStopping => "the server is stopping; the session ended".to_string(),
        }
    }
}

/// How a session ended: the audit trail's detail, and the last word the
/// operator is owed, if any (none once the program's end reached it, or
/// when the operator is gone).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Ending {
    pub(super) detail: String,
    pub(super) last_word: Option<SessionMessage>,
}

impl Ending {
    /// The end of a relay of `service` on `computer`. `end` is the
    /// program's end as the agent sent it on the session connection, else
    /// the operator's leaving, if either came; `moved` the bytes relayed to
    /// the computer and back.
    pub(super) fn of(
        relayed: RelayEnd<Stop>,
        end: Option<SessionEnd>,
        service: &Service,
        computer: &str,
        moved: (u64, u64),
    ) -> Ending {
        let lost = |detail: String| Ending {
            detail,
            last_word: Some(SessionMessage::Ended {
                cause: EndCause::ComputerLost,
                message: format!("the connection to {computer} closed before the session ended"),
            }),
        };
        match (relayed, end) {
            (RelayEnd::Stopped(stop), _) => Ending {
                detail: stop.detail(),
                last_word: Some(SessionMessage::Ended {
                    cause: stop.cause(),
                    message: stop.words(computer),
                }),
            },
            (RelayEnd::ComputerClosed | RelayEnd::ComputerBroke(_), Some(end)) => Ending::said(end),
            (RelayEnd::OperatorGone, end) => Ending::said(end.unwrap_or_else(|| left(service))),
            (RelayEnd::ComputerClosed, None) => {
                let (up, down) = moved;
                lost(format!(
                    "ended: the connection closed without word from the computer ({up} bytes to the computer, {down} bytes back)"
                ))
            }
            (RelayEnd::ComputerBroke(error), None) => lost(format!(
                "ended: the connection to the computer was lost ({error})"
            )),
        }
    }

    /// An end the operator has heard already, or cannot hear.
    fn said(end: SessionEnd) -> Ending {
        Ending {
            detail: format!("ended: {end}"),
            last_word: None,
        }
    }
}

/// How a session of `service` ends when its operator leaves.
pub(super) fn left(service: &Service) -> SessionEnd {
    match service {
        Service::Forward { .. } => SessionEnd::ForwardingStopped,
        Service::Command { .. } | Service::Shell { .. } | Service::Desktop | Service::Files(_) => {
            SessionEnd::OperatorLeft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PC: &str = "office-pc";

    fn command() -> Service {
        Service::Command {
            argv: vec!["sleep".into(), "60".into()],
        }
    }

    fn ended(cause: EndCause, message: &str) -> Option<SessionMessage> {
        Some(SessionMessage::Ended {
            cause,
            message: message.to_string(),
        })
    }

    #[test]
    fn the_servers_own_ends_are_told_to_the_operator_in_words() {
        let cases = [
            (
                Stop::TimeLimit { secs: 3600 },
                EndCause::TimeLimit,
                "the session reached office-pc's time limit of 3600 s",
                "ended: time limit",
            ),
            (
                Stop::Revoked(Revoked::Access),
                EndCause::AccessRevoked,
                "your access to office-pc was revoked",
                "ended: the operator's access to this computer was revoked",
            ),
            (
                Stop::Revoked(Revoked::OperatorToken),
                EndCause::TokenRevoked,
                "your operator token was replaced or removed",
                "ended: the operator's token was replaced or removed",
            ),
            (
                Stop::Revoked(Revoked::Computer),
                EndCause::ComputerRemoved,
                "computer \"office-pc\" was removed from the server",
                "ended: the computer was removed",
            ),
        ];
        for (stop, cause, words, detail) in cases {
            // Even after the program's exit status: the server's word is last.
            let ending = Ending::of(
                RelayEnd::Stopped(stop),
                Some(SessionEnd::Exited { code: 0 }),
                &command(),
                PC,
                (0, 0),
            );
            assert_eq!(ending.detail, detail, "{stop:?}");
            assert_eq!(ending.last_word, ended(cause, words), "{stop:?}");
        }
    }

    #[test]
    fn the_programs_end_is_the_agents_word_and_needs_none_of_the_servers() {
        let exited = Ending::of(
            RelayEnd::ComputerClosed,
            Some(SessionEnd::Exited { code: 5 }),
            &command(),
            PC,
            (0, 0),
        );
        assert_eq!(exited.detail, "ended: exit status 5");
        assert_eq!(exited.last_word, None);
    }

    #[test]
    fn a_computer_that_closes_without_an_exit_status_leaves_the_server_to_say_so() {
        let closed = Ending::of(RelayEnd::ComputerClosed, None, &command(), PC, (3, 4));
        assert_eq!(
            closed.detail,
            "ended: the connection closed without word from the computer (3 bytes to the computer, 4 bytes back)"
        );
        assert_eq!(
            closed.last_word,
            ended(
                EndCause::ComputerLost,
                "the connection to office-pc closed before the session ended"
            )
        );
    }

    #[test]
    fn an_operator_who_left_is_told_nothing() {
        let forward = Service::Forward {
            targets: vec!["127.0.0.1:5900".into()],
        };
        let stopped = Ending::of(RelayEnd::OperatorGone, None, &forward, PC, (0, 0));
        assert_eq!(stopped.detail, "ended: forwarding stopped by the operator");
        assert_eq!(stopped.last_word, None);
        let left = Ending::of(RelayEnd::OperatorGone, None, &command(), PC, (0, 0));
        assert_eq!(
            left.detail,
            "ended: the operator left; the program was stopped"
        );
    }
}
