//! `config check [--print]`.

use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::{print, println};

/// Prints "config OK", or the effective config with secrets redacted. The config was already
/// loaded and validated (a failure there is exit code 2 before this runs).
///
/// # Errors
/// A write error.
pub(crate) fn check(cfg: &HubConfig, print_config: bool) -> Result<(), HubError> {
    if print_config {
        print(&cfg.to_redacted_toml())?;
    } else {
        println("config OK")?;
    }
    Ok(())
}
