//! The loss curve as SVG (plotters' SVG backend: no fonts or native libraries needed).

use plotters::prelude::*;

/// Draws train loss per step and hold-out loss at its evaluation steps.
pub fn loss_svg(train: &[(usize, f64)], eval: &[(usize, f64)]) -> String {
    let mut out = String::new();
    let max_x = train
        .iter()
        .chain(eval)
        .map(|p| p.0)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_y = train
        .iter()
        .chain(eval)
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    {
        let root = SVGBackend::with_string(&mut out, (800, 420)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption("loss", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y);
        if let Ok(mut chart) = chart {
            let _ = chart
                .configure_mesh()
                .x_desc("step")
                .y_desc("cross-entropy")
                .draw();
            let pts =
                |s: &[(usize, f64)]| s.iter().map(|&(x, y)| (x as f64, y)).collect::<Vec<_>>();
            if let Ok(s) = chart.draw_series(LineSeries::new(pts(train), &BLUE)) {
                s.label("train")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
            }
            if let Ok(s) = chart.draw_series(LineSeries::new(pts(eval), RED.stroke_width(2))) {
                s.label("hold-out")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
            }
            let _ = chart.draw_series(
                pts(eval)
                    .into_iter()
                    .map(|p| Circle::new(p, 3, RED.filled())),
            );
            let _ = chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw();
        }
        let _ = root.present();
    }
    out
}
