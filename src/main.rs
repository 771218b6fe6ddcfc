//! The `fleetwire` binary: parses the command line and runs it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fleetwire::cli::{Cli, Command, TeslaCommand};
use fleetwire::config::Config;
use fleetwire::{demo, node::Node, observability};

/// jemalloc instead of glibc's allocator: the pipeline allocates per record (JSON values,
/// signal maps, snapshots), and a profile of a saturated node spent ~30 % of its CPU in
/// glibc malloc/free. Of glibc, mimalloc and jemalloc, jemalloc sustained the most
/// records/s; mimalloc also cost 3× the memory per idle vehicle actor (transparent huge
/// pages). Figures: docs/performance.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    fleetwire::install_crypto_provider();
    let limit = Duration::from_secs(cli.shutdown_limit_secs);
    let result = match cli.command {
        Command::ValidateConfig { file } => Config::load(Some(&file))
            .map(|config| {
                println!(
                    "{} is valid. Effective configuration (as JSON):\n",
                    file.display()
                );
                println!("{}", serde_json::to_string_pretty(&config).unwrap_or_default());
            })
            .map_err(anyhow::Error::from),
        Command::Tesla(TeslaCommand::Decode { files }) => {
            let valid = fleetwire::tesla::decode::run(&files, &mut std::io::stdout(), &mut std::io::stderr());
            return match valid {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("fleetwire: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::DevIssuer { dir, tenant, ttl_secs } => fleetwire_actors::model::TenantId::parse(&tenant)
            .map_err(anyhow::Error::msg)
            .and_then(|tenant| fleetwire::auth::dev_setup::write(&dir, &tenant, ttl_secs))
            .map(|setup| {
                println!(
                    "Wrote {dir}: serve with --config {config}\n\ntenant-admin token:\n{admin}\n\nviewer token:\n{viewer}\n\nadmin token:\n{platform}",
                    dir = dir.display(),
                    config = setup.config_file.display(),
                    admin = setup.tenant_admin_token,
                    viewer = setup.viewer_token,
                    platform = setup.admin_token,
                );
            }),
        Command::Serve { config } => serve(&config, limit).await,
        Command::Demo(args) => match Config::load(args.config.as_deref()) {
            Ok(config) => {
                observability::init_logging(&config.log);
                demo::run(config, args, limit).await
            }
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetwire: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(files: &[std::path::PathBuf], limit: Duration) -> anyhow::Result<()> {
    let config = Config::load_files(files)?;
    observability::init_logging(&config.log);
    let node = Node::start(config).await?;
    demo::wait_for_stop(0).await;
    node.shutdown(limit).await;
    Ok(())
}
