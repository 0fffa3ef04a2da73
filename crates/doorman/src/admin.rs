//! `doorman admin`: operators, agents, access rules, blocks and the audit
//! trail, on the database the server uses ([`place`]: where it is, made
//! only with `--create`).

use crate::cli::{
    self, AccessCommand, AdminCommand, AuditCommand, BlocksCommand, OperatorCommand,
    PrincipalCommand, TlsCommand,
};
use anyhow::Result;
use doorman_core::access::ServiceSet;
use doorman_store::Principal;

mod place;

/// `admin operator …`.
async fn operator(store: &doorman_store::Store, command: OperatorCommand) -> Result<()> {
    use doorman_server::admin;
    match command {
        OperatorCommand::Add {
            name,
            computers,
            services,
            email,
        } => {
            let new = admin::NewOperator {
                services: services.unwrap_or(ServiceSet::ALL),
                computers,
                email,
            };
            println!("{}", admin::add_operator_with(store, &name, &new).await?);
            if new.computers.is_empty() {
                eprintln!(
                    "operator {name:?} reaches no computer until granted: doorman admin access grant {name} --computers PATTERN"
                );
            }
        }
        OperatorCommand::List => {
            let emails = admin::operator_emails(store).await?;
            for (name, added) in admin::list(store, Principal::Operator).await? {
                let email = emails
                    .get(&name)
                    .map(|email| format!("  email {email}"))
                    .unwrap_or_default();
                println!(
                    "{name}  added {}{email}",
                    doorman_core::display::format_time(added)
                );
            }
        }
        OperatorCommand::Rotate { name } => {
            principal(
                store,
                Principal::Operator,
                PrincipalCommand::Rotate { name },
            )
            .await?;
        }
        OperatorCommand::Remove { name } => {
            principal(
                store,
                Principal::Operator,
                PrincipalCommand::Remove { name },
            )
            .await?;
        }
        OperatorCommand::SetEmail { name, email } => {
            admin::set_operator_email(store, &name, email.as_deref()).await?;
            match email {
                Some(email) => eprintln!(
                    "operator {name:?}: email {email}; it never approves this operator's requests"
                ),
                None => eprintln!("operator {name:?}: email cleared"),
            }
        }
    }
    Ok(())
}

/// `admin access …`.
async fn access(store: &doorman_store::Store, command: AccessCommand) -> Result<()> {
    use doorman_server::admin;
    match command {
        AccessCommand::Grant {
            operator,
            computers,
            services,
        } => {
            let services = services.unwrap_or(ServiceSet::ALL);
            admin::grant(store, &operator, &computers, services).await?;
            let patterns: Vec<&str> = computers.iter().map(|p| p.as_str()).collect();
            eprintln!(
                "operator {operator:?} may reach {} for {services}",
                patterns.join(", ")
            );
        }
        AccessCommand::Revoke {
            operator,
            computers,
        } => {
            let revoked = admin::revoke_grant(store, &operator, &computers).await?;
            eprintln!("{}", admin::describe_revocation(&revoked));
        }
        AccessCommand::List { json } => {
            for row in admin::grants(store).await? {
                if json {
                    let line = serde_json::json!({
                        "operator": row.operator,
                        "computers": row.grant.computers.as_str(),
                        "services": row.grant.services.kinds().map(|k| k.as_str()).collect::<Vec<_>>(),
                        "created_at": row.created_at,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{}  {}  {}  added {}",
                        row.operator,
                        row.grant.computers,
                        row.grant.services,
                        doorman_core::display::format_time(row.created_at)
                    );
                }
            }
        }
    }
    Ok(())
}

/// `admin agent …`, and what operators share with agents.
async fn principal(
    store: &doorman_store::Store,
    kind: Principal,
    command: PrincipalCommand,
) -> Result<()> {
    use doorman_server::admin;
    match command {
        PrincipalCommand::Add { name } => println!("{}", admin::add(store, kind, &name).await?),
        PrincipalCommand::Invite { .. } => unreachable!("dispatched by admin()"),
        PrincipalCommand::List => {
            for (name, added) in admin::list(store, kind).await? {
                println!(
                    "{name}  added {}",
                    doorman_core::display::format_time(added)
                );
            }
        }
        PrincipalCommand::Rotate { name } => {
            println!("{}", admin::replace_secret(store, kind, &name).await?);
        }
        PrincipalCommand::Remove { name } => {
            let cancelled = admin::remove(store, kind, &name).await?;
            // What it had goes with it: a name added again is someone new.
            let (had, sessions) = match kind {
                Principal::Operator => ("its grants and blocks", "its sessions"),
                Principal::Agent => ("its blocks", "sessions on it"),
            };
            eprintln!(
                "removed {} {name:?} with {had}; {cancelled} pending request(s) cancelled; {sessions} end within a heartbeat",
                kind.as_str()
            );
        }
    }
    Ok(())
}

pub async fn admin(args: cli::AdminArgs) -> Result<()> {
    let place = place::Place::find(&args)?;
    if let AdminCommand::Tls(TlsCommand::Init {
        names,
        ips,
        replace,
    }) = &args.command
    {
        return tls_init(place.data_dir()?, names, ips, *replace);
    }
    let store = place.open(args.create).await?;
    match args.command {
        AdminCommand::Operator(command) => operator(&store, command).await?,
        AdminCommand::Access(command) => access(&store, command).await?,
        AdminCommand::Agent(PrincipalCommand::Invite {
            name,
            expires,
            public_url,
        }) => invite(&store, &name, expires, public_url.as_deref()).await?,
        AdminCommand::Agent(command) => principal(&store, Principal::Agent, command).await?,
        AdminCommand::Blocks(command) => blocks(&store, command).await?,
        AdminCommand::Tls(_) => unreachable!("handled before opening the database"),
        AdminCommand::Audit {
            prune: Some(AuditCommand::Prune { older_than }),
            ..
        } => {
            use doorman_runtime::clock::system_millis;
            let now = system_millis();
            let before = now - i64::from(older_than) * 86_400_000;
            let pruned = store.prune_audit(before, "admin", now).await?;
            eprintln!("deleted {pruned} audit events older than {older_than} days");
        }
        AdminCommand::Recordings(command) => crate::recordings::manage(&store, command).await?,
        AdminCommand::Play {
            id,
            identity,
            speed,
        } => crate::recordings::play(&store, id, identity.as_deref(), speed).await?,
        AdminCommand::Audit { json, prune: None } => {
            for event in doorman_server::admin::audit(&store).await? {
                if json {
                    println!("{}", serde_json::to_string(&event)?);
                } else {
                    println!("{}", doorman_server::admin::format_audit_line(&event));
                }
            }
        }
    }
    Ok(())
}

/// `admin agent invite`: the line to run on the computer (stdout), and
/// what it is (stderr).
async fn invite(
    store: &doorman_store::Store,
    name: &str,
    expires: std::time::Duration,
    public_url: Option<&str>,
) -> Result<()> {
    let invitation = doorman_server::admin::invite(store, name, expires, public_url).await?;
    let pinned = if invitation.url.ca_sha256().is_some() {
        "; the URL pins the server's CA by its SHA-256"
    } else {
        ""
    };
    eprintln!(
        "computer {name:?} is invited until {} (the code works once{pinned}). Run this on the computer:",
        doorman_core::display::format_time(invitation.expires_at)
    );
    // Quoted for every shell: a `#` is a pattern to zsh's extended glob.
    println!("doorman agent join '{}'", invitation.url.expose());
    Ok(())
}

/// `admin tls init`: the CA and server certificate, and what to do with them.
fn tls_init(
    data_dir: &std::path::Path,
    names: &[String],
    ips: &[std::net::IpAddr],
    replace: bool,
) -> Result<()> {
    let made = doorman_certificates::private_ca::init(data_dir, names, ips, replace)?;
    let absolute = |path: &std::path::Path| std::path::absolute(path).unwrap_or(path.to_path_buf());
    let ca = absolute(&made.ca_file);
    println!(
        "CA certificate:      {} ({})",
        ca.display(),
        if made.kept_ca { "kept" } else { "new" }
    );
    println!("SHA-256 fingerprint: {}", made.ca_fingerprint);
    println!(
        "Server certificate:  {} for {}, valid until the end of {}",
        absolute(&made.server.cert).display(),
        made.names.join(", "),
        made.valid_until_year
    );
    println!();
    println!(
        "The server serves with it when started with --data-dir {} and no --tls-cert.",
        absolute(data_dir).display()
    );
    println!("Copy the CA certificate to each computer and operator, and check its fingerprint:");
    println!("  agents:    ca = \"/path/to/ca.pem\" in the agent's settings");
    println!("             (or `doorman admin agent invite NAME`: its join URL pins this CA)");
    println!("  operators: doorman connect --ca /path/to/ca.pem …");
    if made.kept_ca {
        println!("Those that trust this CA already need nothing new.");
    }
    println!(
        "Run this again with --name or --ip to add a name; --replace starts over with a new CA."
    );
    Ok(())
}

/// `admin blocks …`: the blocks "I did not expect this" left.
async fn blocks(store: &doorman_store::Store, command: BlocksCommand) -> Result<()> {
    use doorman_core::display::format_time;
    use doorman_runtime::clock::system_millis;
    match command {
        BlocksCommand::List { json } => {
            let blocks = store.blocks(system_millis()).await?;
            // Said on stderr, so that stdout stays empty for scripts.
            if blocks.is_empty() && !json {
                eprintln!("no block is in force: no operator is kept from any computer");
            }
            for block in blocks {
                if json {
                    let line = serde_json::json!({
                        "operator": block.operator,
                        "computer": block.computer,
                        "until": block.until,
                        "reported_by": block.reported_by,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{}  {}  until {}  reported by {}",
                        block.operator,
                        block.computer,
                        format_time(block.until),
                        block.reported_by
                    );
                }
            }
        }
        BlocksCommand::Lift { operator, computer } => {
            store
                .lift_block(&operator, &computer, system_millis())
                .await?;
            eprintln!("{operator:?} may ask {computer:?} again");
        }
    }
    Ok(())
}
