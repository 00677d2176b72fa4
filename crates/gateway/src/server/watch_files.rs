//! Watches the configuration file and the certificates it names. Directories are watched rather than files,
//! because editors and certificate tools replace files by renaming a new one into place.

use notify::{RecursiveMode, Watcher as _};
use std::collections::HashSet;
use std::path::PathBuf;
use tokio::sync::mpsc;

pub struct Watcher {
    _inner: notify::RecommendedWatcher,
}

impl Watcher {
    /// Starts watching; each relevant change sends one message.
    pub fn new(files: &[PathBuf]) -> notify::Result<(Watcher, mpsc::UnboundedReceiver<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        let wanted: HashSet<PathBuf> = files.iter().map(abs).collect();
        let mut inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if ev.kind.is_access() {
                    return;
                }
                if ev.paths.iter().any(|p| wanted.contains(&std::path::absolute(p).unwrap_or_else(|_| p.clone()))) {
                    let _ = tx.send(());
                }
            }
        })?;
        let dirs: HashSet<PathBuf> = files
            .iter()
            .map(|f| abs(f).parent().map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from(".")))
            .collect();
        for d in dirs {
            inner.watch(&d, RecursiveMode::NonRecursive)?;
        }
        Ok((Watcher { _inner: inner }, rx))
    }
}
