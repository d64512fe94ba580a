//! p2p-peer-rs: an independent protocol-v1 peer for the p2p testbed (standard library only).

mod args;
mod peer;
mod signals;
mod wire;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(argv) {
        Ok(args::Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(args::Parsed::Run(a)) => a,
        Err(msg) => {
            eprintln!("p2p-peer-rs: error: {msg}");
            return ExitCode::from(2);
        }
    };
    match peer::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("p2p-peer-rs: error: {msg}");
            ExitCode::from(1)
        }
    }
}
