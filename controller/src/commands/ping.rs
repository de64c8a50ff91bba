//! `ctl ping`: connect, authenticate and round-trip to every target.

use anyhow::Result;

use super::Exit;
use crate::cli::PingArgs;
use crate::client;
use crate::fanout::fan_out;
use crate::output;
use crate::plan;

/// `ctl ping`: connect, authenticate and round-trip to every target.
pub async fn ping(args: PingArgs) -> Result<Exit> {
    let plan = plan::resolve(&args.targets, &args.connect)?;
    let connector = plan.connector();
    let outcomes = fan_out(&plan.targets, plan.forks, |_, host| {
        let connector = connector.clone();
        async move { client::ping::ping(&connector, &host).await }
    })
    .await;
    let names: Vec<String> = plan.targets.iter().map(|host| host.name.clone()).collect();
    let addrs: Vec<String> = plan.targets.iter().map(|host| host.endpoint()).collect();
    output::print_ping(&names, &addrs, &outcomes, args.json);
    Ok(Exit::from_outcomes(&outcomes))
}
