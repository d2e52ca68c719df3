mod common;
use lookalike_engine::AnalyzeOptions;

#[test]
fn smoke_timings() {
    let mut a = common::analyzer();
    for rel in ["tg1280/id01/1.jpg", "named/celeb5/ben_afflek/1.jpg", "scenes/group-t1.jpg"] {
        let b = std::fs::read(common::faces_dir().join(rel));
        let Ok(b) = b else { eprintln!("skip {rel}"); continue };
        for _ in 0..2 {
            let r = a.analyze_bytes(&b, &AnalyzeOptions::default()).unwrap();
            eprintln!("{rel}: {}x{} faces={} {:?}", r.width, r.height, r.faces.len(), r.timings);
        }
    }
}
