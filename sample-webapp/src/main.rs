//! The `sample-webapp` binary: parse flags, run the server.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match sample_webapp::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match sample_webapp::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sample-webapp: {err:#}");
            ExitCode::FAILURE
        }
    }
}
