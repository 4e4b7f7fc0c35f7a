//! `log.csv` of `brainsam train`: one row per step, kept free of duplicates across resumes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

const HEADER: &str = "step,loss,lr,slices_per_s";

/// The log file and its rows. A resumed run restarts at its last checkpoint, so the steps a
/// killed run logged after that checkpoint come again: the first replayed step drops them.
pub struct TrainLog {
    file: File,
    rows: Vec<(usize, String)>,
}

impl TrainLog {
    /// Opens `path`; with `resume` the rows already there are kept, otherwise it starts empty.
    pub fn open(path: &Path, resume: bool) -> std::io::Result<Self> {
        let rows: Vec<(usize, String)> = if resume {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| Some((l.split(',').next()?.parse().ok()?, l.to_string())))
                .collect()
        } else {
            Vec::new()
        };
        let mut log = Self {
            file: OpenOptions::new().create(true).append(true).open(path)?,
            rows,
        };
        log.rewrite()?;
        Ok(log)
    }

    /// (step, loss, lr) of every row, for the training curve.
    pub fn points(&self) -> Vec<(usize, f32, f64)> {
        self.rows
            .iter()
            .filter_map(|(_, l)| {
                let f: Vec<&str> = l.split(',').collect();
                Some((
                    f.first()?.parse().ok()?,
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.parse().ok()?,
                ))
            })
            .collect()
    }

    pub fn record(
        &mut self,
        step: usize,
        loss: f32,
        lr: f64,
        slices_per_s: f64,
    ) -> std::io::Result<()> {
        let replay = self.rows.last().is_some_and(|r| r.0 >= step);
        self.rows.retain(|r| r.0 < step);
        let line = format!("{step},{loss:.5},{lr:.3e},{slices_per_s:.3}");
        self.rows.push((step, line.clone()));
        if replay {
            self.rewrite()
        } else {
            writeln!(self.file, "{line}")
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    fn rewrite(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        let mut text = format!("{HEADER}\n");
        for (_, l) in &self.rows {
            text.push_str(l);
            text.push('\n');
        }
        self.file.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(path: &Path) -> Vec<usize> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect()
    }

    /// A run killed after step 5 with its checkpoint at step 3 resumes at step 4: the log
    /// then holds each step once, the replayed ones with their new values.
    #[test]
    fn a_resumed_run_logs_each_step_once() {
        let dir = std::env::temp_dir().join(format!("brainsam-{}-train-log", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.csv");
        let mut log = TrainLog::open(&path, false).unwrap();
        for s in 1..=5 {
            log.record(s, 1.0, 1e-4, 1.0).unwrap();
        }
        drop(log);
        let mut log = TrainLog::open(&path, true).unwrap();
        assert_eq!(steps(&path), [1, 2, 3, 4, 5]);
        for s in 4..=6 {
            log.record(s, 0.5, 1e-4, 1.0).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(steps(&path), [1, 2, 3, 4, 5, 6]);
        let p = log.points();
        assert_eq!(
            p.iter().map(|x| x.1).collect::<Vec<_>>(),
            [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
        );
        // A fresh run (no --resume) starts over.
        drop(log);
        let mut log = TrainLog::open(&path, false).unwrap();
        log.record(1, 0.2, 1e-4, 1.0).unwrap();
        assert_eq!(steps(&path), [1]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
