//! Where commands come from with `-i`: a `ctfwd> ` prompt with line
//! editing and history (rustyline) where stdin is a terminal, plain lines
//! of stdin otherwise (so scripts can pipe commands in). A thread reads
//! them and hands each to the main lcore's loop, waiting until it has run
//! before it shows the next prompt.

use std::io::{BufRead, IsTerminal};
use std::sync::mpsc::{channel, Receiver, Sender};

/// A line read, or the end of input (which quits, as testpmd's does).
pub enum Input {
    Line(String),
    End,
}

/// The reading thread's ends: lines come in on `lines`; `done` tells the
/// thread a line has run.
pub struct Prompt {
    pub lines: Receiver<Input>,
    done: Sender<()>,
}

impl Prompt {
    /// Starts reading stdin on its own thread.
    pub fn spawn() -> std::io::Result<Prompt> {
        let (line_tx, lines) = channel();
        let (done, done_rx) = channel();
        let terminal = std::io::stdin().is_terminal();
        std::thread::Builder::new()
            .name("ctfwd-prompt".into())
            .spawn(move || {
                if terminal {
                    read_terminal(&line_tx, &done_rx);
                } else {
                    read_lines(&line_tx, &done_rx);
                }
                let _ = line_tx.send(Input::End);
            })?;
        Ok(Prompt { lines, done })
    }

    /// Says the last line has run (its output is printed).
    pub fn ran(&self) {
        let _ = self.done.send(());
    }
}

/// Sends `line` and waits until it has run; false once the main loop has
/// gone.
fn hand_over(line: String, tx: &Sender<Input>, done: &Receiver<()>) -> bool {
    tx.send(Input::Line(line)).is_ok() && done.recv().is_ok()
}

fn read_lines(tx: &Sender<Input>, done: &Receiver<()>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        if !hand_over(line, tx, done) {
            return;
        }
    }
}

fn read_terminal(tx: &Sender<Input>, done: &Receiver<()>) {
    let Ok(mut editor) = rustyline::DefaultEditor::new() else {
        return read_lines(tx, done);
    };
    loop {
        match editor.readline("ctfwd> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if !hand_over(line, tx, done) {
                    return;
                }
            }
            // Ctrl-C or Ctrl-D at the prompt ends the session, as in
            // testpmd.
            Err(_) => return,
        }
    }
}
