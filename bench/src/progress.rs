//! Live progress on the terminal for every long step. When stderr is not a terminal (CI, a
//! test) indicatif draws nothing, so each finished step is also written as one plain line.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

pub fn bar(len: u64, message: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner:.green} {msg:<48} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    pb.set_message(message.into());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner:.green} {msg} {elapsed_precise}")
            .expect("a valid template"),
    );
    pb.set_message(message.into());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

pub fn finish(pb: &ProgressBar, message: impl Into<String>) {
    let message = message.into();
    if pb.is_hidden() {
        eprintln!("done: {message}");
    }
    pb.finish_with_message(message);
}
