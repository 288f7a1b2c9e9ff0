//! `greygate explain`: the decision a message would get, step by step.
//!
//! It builds the same engine the server runs, from the same config and
//! store, and runs the same pipeline with a read-only store lookup, so
//! what it prints is what the server would do, and nothing changes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use greygate_engine::{Action, Engine, Facts, Stage};
use greygate_store::Store;

use super::print_json;
use crate::cli::ExplainArgs;
use crate::config::Config;
use crate::config::duration::Human;

pub async fn run(args: ExplainArgs, store: Arc<dyn Store>, config: &Config) -> Result<ExitCode> {
    let checks_config = config.checks()?;
    let checks = crate::checks::build(&checks_config, &crate::checks::Dns::new(&checks_config.dns))?;
    let engine = Engine::new(store, config.policy()?, checks)?;
    engine.refresh_lists().await?;
    let sender = if args.sender == "<>" { String::new() } else { args.sender.clone() };
    let facts = Facts {
        client_name: args.client_name.clone(),
        helo: args.helo.clone(),
        sender: Some(sender),
        recipient: Some(args.recipient.clone()),
        authenticated: args.sasl_username.clone(),
        ..Facts::new(Stage::Rcpt, args.client_ip)
    };
    let x = engine.explain(&facts, crate::serve::unix_now()).await;
    let mut prepended = crate::serve::policy::Prepended::default();
    let answer = crate::serve::policy::encode(&x.verdict, config.policy.defer_action, None, &mut prepended);
    let reply = match &x.verdict.action {
        Action::Accept => None,
        Action::Defer(r) | Action::Reject(r) => Some(r.to_string()),
    };

    if args.output.json {
        let steps: Vec<_> = x.trace.steps.iter().map(|(s, v)| serde_json::json!({ "step": s, "result": v })).collect();
        print_json(&serde_json::json!({
            "steps": steps,
            "rules": x.trace.rules,
            "settings": x.trace.settings.as_ref().map(|s| serde_json::json!({
                "greylist": s.greylist, "learning": s.learning,
                "delay": s.timers.delay, "retry_window": s.timers.retry_window,
                "pass_lifetime": s.timers.pass_lifetime, "auto_whitelist_after": s.auto_whitelist_after,
            })),
            "checks": x.trace.checks.iter().map(|c| serde_json::json!({
                "check": c.check, "result": c.result, "score": c.score, "detail": c.detail,
            })).collect::<Vec<_>>(),
            "key": x.trace.key,
            "store": x.trace.store.as_ref().map(|d| serde_json::json!({ "outcome": d.outcome, "entry": d.entry })),
            "action": x.verdict.action.name(),
            "reply": reply,
            "headers": x.verdict.headers,
            "reason": x.verdict.reason.kind(),
            "detail": x.verdict.reason.to_string(),
            "learning": x.verdict.learning,
            "policy_answer": answer.to_string(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }

    for (step, result) in &x.trace.steps {
        println!("{step:<14} {result}");
    }
    if let Some(s) = &x.trace.settings {
        let secs = |v: i64| Human::secs(v.max(0) as u64).to_string();
        println!(
            "settings       greylist {}, delay {}, retry window {}, pass lifetime {}, auto-whitelist after {}, learning {}",
            if s.greylist { "on" } else { "off" },
            secs(s.timers.delay),
            secs(s.timers.retry_window),
            secs(s.timers.pass_lifetime),
            s.auto_whitelist_after,
            if s.learning { "on" } else { "off" },
        );
    }
    println!();
    println!(
        "verdict        {}{}",
        x.verdict.action.name(),
        if x.verdict.learning { " (learning mode: accepted anyway)" } else { "" }
    );
    if let Some(r) = reply {
        println!("reply          {r}");
    }
    for h in &x.verdict.headers {
        println!("header         {h}");
    }
    println!("reason         {}", x.verdict.reason);
    println!("policy answer  action={answer}");
    Ok(ExitCode::SUCCESS)
}
