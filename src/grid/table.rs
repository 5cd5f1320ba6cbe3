//! The human table of `quarry grid`: one row per block, then a total.

use super::Grid;

/// Slice ids listed per row before the rest are only counted.
const SHOWN: usize = 6;

impl Grid {
    /// One aligned row per block (id, state, size, used, free, slices), then
    /// a total line. Sizes are MiB.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 6]> = vec![[
            "BLOCK".into(),
            "STATE".into(),
            "SIZE".into(),
            "USED".into(),
            "FREE".into(),
            "SLICES".into(),
        ]];
        let (mut size, mut used) = (0, 0);
        for (id, slot) in &self.blocks {
            size += slot.block.size;
            used += slot.used;
            let mut slices: Vec<&str> = slot.slices.iter().take(SHOWN).map(|id| &**id).collect();
            let more = slot.slices.len().saturating_sub(SHOWN);
            let more = format!("(+{more} more)");
            if slot.slices.len() > SHOWN {
                slices.push(&more);
            }
            rows.push([
                id.to_string(),
                slot.block.state.to_string(),
                slot.block.size.to_string(),
                slot.used.to_string(),
                slot.free().to_string(),
                if slices.is_empty() {
                    "-".into()
                } else {
                    slices.join(" ")
                },
            ]);
        }
        let mut width = [0; 6];
        for row in &rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let [block, state, size, used, free, slices] = row;
            let line = format!(
                "{block:<w0$}  {state:<w1$}  {size:>w2$}  {used:>w3$}  {free:>w4$}  {slices}",
                w0 = width[0],
                w1 = width[1],
                w2 = width[2],
                w3 = width[3],
                w4 = width[4],
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let blocks = self.blocks.len();
        let slices = self.slices.len();
        out.push_str(&format!(
            "{blocks} block{}, {slices} slice{}; MiB: {size} size, {used} used, {} free\n",
            if blocks == 1 { "" } else { "s" },
            if slices == 1 { "" } else { "s" },
            size - used,
        ));
        out
    }
}
