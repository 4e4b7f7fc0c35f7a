//! `brainsam calibrate`: choose where each kind of structure's masks are cut (a logit
//! threshold per kind, on slices and in walks: `MaskThresholds`) on subjects set apart for
//! it, and write them into a copy of the model.
//!
//! Slice thresholds are chosen by Dice of box (or point) prompts on every slice, where one
//! prediction serves every threshold of the grid. Walk thresholds then by 3-D Dice of one
//! box and of one click on each structure's largest slice, walked through the volume (the
//! page's *Whole structure (3D)*): one run of both per threshold of the walk grid.

use std::path::PathBuf;

use brainsam::data::labels::{kind, structure};
use brainsam::model::io::{with_mask_thresholds, MaskThresholds};
use brainsam::model::prompt_encoder::STRUCTURE_KINDS;

use super::choices::name;
use super::common::{bundled_model, read, Res};
use super::evaluate::{graded, walked, EvaluateArgs, Graded, PromptKind};

#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// Subjects, model and prompts as for `evaluate` (box or point prompts; its
    /// --mask-threshold is replaced by the grid).
    #[command(flatten)]
    pub eval: EvaluateArgs,
    /// The model with its thresholds (safetensors; tensors as in --model).
    #[arg(long)]
    pub out: PathBuf,
    /// Slice thresholds to try (logits, comma-separated; 0, SAM's, is always tried).
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        default_value = "-2,-1,-0.5,0,0.5,1,1.5,2,3,4"
    )]
    pub grid: Vec<f32>,
    /// Walk thresholds to try (each costs a walk of every structure from a box and from a
    /// click, per subject).
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        default_value = "-2,-1,0,1,2,3"
    )]
    pub walk_grid: Vec<f32>,
    /// Choose slice thresholds only (walks keep 0).
    #[arg(long, conflicts_with = "no_slices")]
    pub no_walks: bool,
    /// Choose walk thresholds only (slices keep 0; seeds of walks are cut at 0 too).
    #[arg(long)]
    pub no_slices: bool,
    /// A kind keeps 0 unless another threshold raises its mean Dice by more than this.
    #[arg(long, default_value_t = 0.002)]
    pub min_gain: f64,
}

pub fn run(a: &CalibrateArgs) -> Res {
    let (grid, walk_grid) = (grid("--grid", &a.grid)?, grid("--walk-grid", &a.walk_grid)?);
    let labels = &a.eval.labels.0;
    let slice = if a.no_slices {
        [0.0; STRUCTURE_KINDS]
    } else {
        let g = graded(&a.eval, &grid)?;
        let table = per_kind(&g, grid.len());
        let slice = choose(&table, &grid, a.min_gain);
        println!(
            "slices: mean Dice by kind and threshold, {} prompts:",
            name(&a.eval.prompt)
        );
        print_table(labels, &table, &grid, &slice);
        slice
    };
    let mut chosen = MaskThresholds {
        slice,
        walk: [0.0; STRUCTURE_KINDS],
    };
    if !a.no_walks {
        let tables: Vec<MaskThresholds> = walk_grid
            .iter()
            .map(|t| MaskThresholds {
                slice,
                walk: [*t; STRUCTURE_KINDS],
            })
            .collect();
        let mut both = Vec::new();
        for prompt in [PromptKind::Propagate, PromptKind::PropagateClick] {
            let args = EvaluateArgs {
                prompt,
                ..a.eval.clone()
            };
            both.push(per_kind(&walked(&args, &tables)?, tables.len()));
        }
        // A kind's walks from a box and from a click count alike.
        let table: Vec<Vec<Option<f64>>> = both[0]
            .iter()
            .zip(&both[1])
            .map(|(b, c)| {
                b.iter()
                    .zip(c)
                    .map(|(b, c)| Some((b.as_ref()? + c.as_ref()?) / 2.0))
                    .collect()
            })
            .collect();
        chosen.walk = choose(&table, &walk_grid, a.min_gain);
        println!("walks: mean 3-D Dice by kind and threshold, one box and one click:");
        print_table(labels, &table, &walk_grid, &chosen.walk);
    }
    let model = a.eval.model.clone().unwrap_or_else(bundled_model);
    let bytes = with_mask_thresholds(&read(&model)?, &chosen)
        .map_err(|e| format!("{}: {e}", model.display()))?;
    std::fs::write(&a.out, bytes).map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    println!(
        "wrote {} (mask thresholds: slice {:?}, walk {:?})",
        a.out.display(),
        chosen.slice,
        chosen.walk
    );
    Ok(())
}

/// The grid, sorted, with 0 in it, every value usable.
fn grid(flag: &str, values: &[f32]) -> Res<Vec<f32>> {
    let mut g: Vec<f32> = values.to_vec();
    g.push(0.0);
    if let Some(bad) = g.iter().find(|t| !MaskThresholds::uniform(**t).valid()) {
        return Err(format!(
            "{flag}: {bad} is not a threshold within ±{}",
            MaskThresholds::LIMIT
        )
        .into());
    }
    g.sort_by(f32::total_cmp);
    g.dedup();
    Ok(g)
}

/// Per kind, per threshold: the mean Dice over subjects and the kind's structures (left
/// and right), None where the kind was not seen.
fn per_kind(g: &Graded, thresholds: usize) -> Vec<Vec<Option<f64>>> {
    let mut sums = vec![vec![(0.0, 0usize); thresholds]; STRUCTURE_KINDS];
    for subject in &g.dice {
        for (t, per_structure) in subject.iter().enumerate() {
            for (l, d) in g.labels.iter().zip(per_structure) {
                if let (Some(k), Some(d)) = (kind(*l), d) {
                    sums[k][t].0 += d;
                    sums[k][t].1 += 1;
                }
            }
        }
    }
    sums.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(s, n)| (n > 0).then(|| s / n as f64))
                .collect()
        })
        .collect()
}

/// Per kind, the best threshold if it beats 0 by more than `min_gain`, else 0.
fn choose(table: &[Vec<Option<f64>>], grid: &[f32], min_gain: f64) -> [f32; STRUCTURE_KINDS] {
    let zero = grid.iter().position(|t| *t == 0.0);
    let mut chosen = [0.0; STRUCTURE_KINDS];
    for (k, row) in table.iter().enumerate() {
        let Some(at_zero) = zero.and_then(|z| row[z]) else {
            continue;
        };
        let best = row
            .iter()
            .enumerate()
            .filter_map(|(t, d)| d.map(|d| (t, d)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((t, d)) = best {
            if d - at_zero > min_gain {
                chosen[k] = grid[t];
            }
        }
    }
    chosen
}

fn print_table(labels: &[i32], table: &[Vec<Option<f64>>], grid: &[f32], chosen: &[f32]) {
    let kind_name = |k: usize| {
        labels
            .iter()
            .find(|l| kind(**l) == Some(k))
            .and_then(|l| structure(*l))
            .map_or("?", |s| {
                s.name
                    .trim_start_matches("Left-")
                    .trim_start_matches("Right-")
            })
    };
    let head: Vec<String> = grid.iter().map(|t| format!("{t:>7}")).collect();
    println!("  {:<14}{} chosen", "kind", head.join(""));
    for (k, row) in table.iter().enumerate() {
        if row.iter().all(Option::is_none) {
            continue;
        }
        let cells: Vec<String> = row
            .iter()
            .map(|d| d.map_or_else(|| format!("{:>7}", "n/a"), |d| format!("{d:>7.4}")))
            .collect();
        println!("  {:<14}{} {:>6}", kind_name(k), cells.join(""), chosen[k]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_moves_off_zero_only_for_more_than_the_minimum_gain() {
        let grid = [-1.0, 0.0, 1.0, 2.0];
        let mut table = vec![vec![None; 4]; STRUCTURE_KINDS];
        table[0] = vec![Some(0.80), Some(0.81), Some(0.83), Some(0.82)]; // best at 1
        table[2] = vec![Some(0.70), Some(0.80), Some(0.801), Some(0.79)]; // gain below 0.002
        table[4] = vec![Some(0.75), Some(0.70), Some(0.69), Some(0.60)]; // best below 0
        let t = choose(&table, &grid, 0.002);
        assert_eq!(t[0], 1.0);
        assert_eq!(t[2], 0.0);
        assert_eq!(t[4], -1.0);
        assert_eq!(t[1], 0.0, "a kind never seen keeps 0");
    }

    #[test]
    fn kinds_pool_left_and_right_over_subjects() {
        // Left/right thalamus (ids 1, 2: kind 0) and left caudate (3: kind 1), one threshold.
        let g = Graded {
            labels: vec![1, 2, 3],
            dice: vec![
                vec![vec![Some(0.9), Some(0.7), Some(0.5)]],
                vec![vec![Some(0.8), None, Some(0.7)]],
            ],
        };
        let t = per_kind(&g, 1);
        assert!((t[0][0].unwrap() - 0.8).abs() < 1e-12);
        assert!((t[1][0].unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(t[2][0], None);
    }

    #[test]
    fn the_grid_always_holds_zero_and_refuses_unusable_values() {
        assert_eq!(
            grid("--grid", &[1.0, -1.0, 1.0]).unwrap(),
            vec![-1.0, 0.0, 1.0]
        );
        assert!(grid("--grid", &[f32::NAN]).is_err());
        let e = grid("--walk-grid", &[50.0]).unwrap_err().to_string();
        assert!(e.starts_with("--walk-grid: 50"), "{e}");
    }
}
