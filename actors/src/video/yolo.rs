//! YOLO-style detector outputs, the de-facto export of most detectors
//! (Ultralytics and others): boxes in input pixels with class scores, with
//! or without NMS in the graph. Boxes are mapped back through the same fit
//! (squash or letterbox) the pre-processing used.

use super::detection::{nms, Detection, DetectionError, DetectorContract, Fit, OutputFormat};

/// Decode `[1, 4 + C, N]` / `[1, N, 4 + C]` (`Yolo`) or `[1, N, 6]`
/// (`YoloNms`) into detections in frame pixels. The caller has checked
/// that every value is finite.
pub fn decode(shape: &[i64], data: &[f32], c: &DetectorContract, frame_w: u32, frame_h: u32) -> Result<Vec<Detection>, DetectionError> {
    let nc = c.classes.len();
    let fit = Fit::new(c.resize, c.input_size as usize, frame_w, frame_h);
    let bad = |expected: String| DetectionError::BadShape { name: c.output_name.clone(), shape: shape.to_vec(), expected };
    let (a, b) = match shape {
        [1, a, b] if *a > 0 && *b > 0 && data.len() == (*a * *b) as usize => (*a as usize, *b as usize),
        _ => {
            return Err(bad(match c.format {
                OutputFormat::YoloNms => "[1, N, 6]".into(),
                _ => format!("[1, {}, N] or [1, N, {}]", 4 + nc, 4 + nc),
            }))
        }
    };
    let mut dets = Vec::new();
    if c.format == OutputFormat::YoloNms {
        if b != 6 {
            return Err(bad("[1, N, 6]".into()));
        }
        for (i, row) in data.chunks_exact(6).enumerate() {
            let score = row[4];
            if score < c.score_threshold {
                continue;
            }
            let class = row[5];
            if !(class >= 0.0 && (class as usize) < nc && class.fract() == 0.0) {
                return Err(DetectionError::BadClass { name: c.output_name.clone(), index: i, class, classes: nc });
            }
            let class = class as usize;
            let mut probabilities = vec![0.0; nc];
            probabilities[class] = score;
            dets.push(detection(c, class, score, probabilities, fit.to_frame([row[0], row[1], row[2], row[3]], frame_w, frame_h)));
        }
        return Ok(dets);
    }
    // Attributes first (Ultralytics' [1, 84, 8400]) or candidates first.
    let (n, at): (usize, Box<dyn Fn(usize, usize) -> f32>) = if a == 4 + nc {
        (b, Box::new(move |i, k| data[k * b + i]))
    } else if b == 4 + nc {
        (a, Box::new(move |i, k| data[i * b + k]))
    } else {
        return Err(bad(format!("[1, {}, N] or [1, N, {}] for {nc} classes", 4 + nc, 4 + nc)));
    };
    for i in 0..n {
        let probabilities: Vec<f32> = (0..nc).map(|k| at(i, 4 + k)).collect();
        let (class, score) = probabilities.iter().copied().enumerate().fold((0, f32::MIN), |m, (k, p)| if p > m.1 { (k, p) } else { m });
        if score < c.score_threshold {
            continue;
        }
        let (cx, cy, w, h) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
        let b = fit.to_frame([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], frame_w, frame_h);
        dets.push(detection(c, class, score, probabilities, b));
    }
    Ok(nms(dets, c.nms_iou))
}

fn detection(c: &DetectorContract, class: usize, score: f32, probabilities: Vec<f32>, b: [f32; 4]) -> Detection {
    Detection { class, class_name: c.classes[class].clone(), score, probabilities, x0: b[0], y0: b[1], x1: b[2], y1: b[3] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::detection::{postprocess, Resize};

    fn contract(format: OutputFormat) -> DetectorContract {
        DetectorContract {
            input_name: "images".into(),
            output_name: "output0".into(),
            input_size: 320,
            mean: [0.0; 3],
            std: [1.0; 3],
            classes: vec!["polyp".into(), "tool".into()],
            score_threshold: 0.25,
            nms_iou: 0.45,
            format,
            resize: Resize::Letterbox,
        }
    }

    /// Three candidates, attributes first: a polyp, a weaker copy of it
    /// (suppressed), one under the threshold.
    #[test]
    fn yolo_candidates_are_thresholded_suppressed_and_mapped_through_the_letterbox() {
        let cands = [[160.0, 160.0, 64.0, 32.0, 0.9, 0.1], [162.0, 160.0, 64.0, 32.0, 0.8, 0.05], [40.0, 100.0, 20.0, 20.0, 0.1, 0.2]];
        let mut first = vec![0f32; 6 * 3];
        for (i, c) in cands.iter().enumerate() {
            for (k, v) in c.iter().enumerate() {
                first[k * 3 + i] = *v;
            }
        }
        let c = contract(OutputFormat::Yolo);
        let d = postprocess(&[1, 6, 3], &first, &c, 640, 360).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].class_name.as_str(), d[0].score), ("polyp", 0.9));
        assert_eq!([d[0].x0, d[0].y0, d[0].x1, d[0].y1], [256.0, 148.0, 384.0, 212.0]);
        assert_eq!(d[0].probabilities, [0.9, 0.1]);
        // The same candidates first.
        let rows: Vec<f32> = cands.iter().flatten().copied().collect();
        assert_eq!(postprocess(&[1, 3, 6], &rows, &c, 640, 360).unwrap(), d);
        // A shape that fits neither names what it expected.
        let e = postprocess(&[1, 7, 3], &[0.0; 21], &c, 640, 360).unwrap_err().to_string();
        assert!(e.contains("[1, 6, N] or [1, N, 6]"), "{e}");
    }

    #[test]
    fn yolo_with_nms_in_the_graph_gives_boxes_as_they_are_and_refuses_a_bad_class() {
        let c = contract(OutputFormat::YoloNms);
        let rows = [128.0, 144.0, 192.0, 176.0, 0.7, 1.0, 0.0, 0.0, 1.0, 1.0, 0.1, 0.0];
        let d = postprocess(&[1, 2, 6], &rows, &c, 640, 360).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].class_name.as_str(), [d[0].x0, d[0].y0, d[0].x1, d[0].y1]), ("tool", [256.0, 148.0, 384.0, 212.0]));
        assert_eq!(d[0].probabilities, [0.0, 0.7]);
        let rows = [0.0, 0.0, 1.0, 1.0, 0.9, 5.0];
        assert!(matches!(postprocess(&[1, 1, 6], &rows, &c, 640, 360), Err(DetectionError::BadClass { index: 0, .. })));
    }
}
