//! `unik pack`: a unikernel as an image archive for `docker load` or `ctr images import`.

use std::process::ExitCode;

use crate::cli::pack::PackArgs;

/// Writes the archive and prints the image's name and ID.
pub fn run(args: PackArgs) -> anyhow::Result<ExitCode> {
    let out = args.output.clone();
    let spec = runtime::pack::PackSpec::from(args);
    let packed = runtime::pack::pack(&spec, &out)?;
    println!("{} {} {}", packed.name, packed.image_id, out.display());
    Ok(ExitCode::SUCCESS)
}
