//! The engine's own thin C++ layer over dlib, for what `dlib-face-recognition` does not
//! expose: HOG detection with scores, a face encoder whose jitter uses a per-call random
//! generator (the crate's jitter shares one global, non-thread-safe `dlib::rand`), and
//! aligned face chips (for gallery thumbnails). Every C++ body catches exceptions: a C++
//! exception must never unwind into Rust.

use cpp::{cpp, cpp_class};
use dlib_face_recognition::{FaceLandmarks, ImageMatrix};
use std::ffi::CString;
use std::path::Path;

cpp! {{
    #include <dlib/dnn.h>
    #include <dlib/image_processing/frontal_face_detector.h>
    #include <dlib/image_processing/full_object_detection.h>
    #include <dlib/image_transforms.h>
    #include <string>
    #include <vector>
    #include <algorithm>

    namespace lookalike_shim {
    // The ResNet of dlib_face_recognition_resnet_model_v1.dat, as declared in dlib's
    // tools/python/src/face_recognition.cpp (the weights file only loads into this type).
    template <template <int,template<typename>class,int,typename> class block, int N, template<typename>class BN, typename SUBNET>
    using residual = dlib::add_prev1<block<N,BN,1,dlib::tag1<SUBNET>>>;
    template <template <int,template<typename>class,int,typename> class block, int N, template<typename>class BN, typename SUBNET>
    using residual_down = dlib::add_prev2<dlib::avg_pool<2,2,2,2,dlib::skip1<dlib::tag2<block<N,BN,2,dlib::tag1<SUBNET>>>>>>;
    template <int N, template <typename> class BN, int stride, typename SUBNET>
    using block = BN<dlib::con<N,3,3,1,1,dlib::relu<BN<dlib::con<N,3,3,stride,stride,SUBNET>>>>>;
    template <int N, typename SUBNET> using ares = dlib::relu<residual<block,N,dlib::affine,SUBNET>>;
    template <int N, typename SUBNET> using ares_down = dlib::relu<residual_down<block,N,dlib::affine,SUBNET>>;
    template <typename SUBNET> using alevel0 = ares_down<256,SUBNET>;
    template <typename SUBNET> using alevel1 = ares<256,ares<256,ares_down<256,SUBNET>>>;
    template <typename SUBNET> using alevel2 = ares<128,ares<128,ares_down<128,SUBNET>>>;
    template <typename SUBNET> using alevel3 = ares<64,ares<64,ares<64,ares_down<64,SUBNET>>>>;
    template <typename SUBNET> using alevel4 = ares<32,ares<32,ares<32,SUBNET>>>;
    using encoder_net = dlib::loss_metric<dlib::fc_no_bias<128,dlib::avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        dlib::max_pool<3,3,2,2,dlib::relu<dlib::affine<dlib::con<32,7,7,2,2,
        dlib::input_rgb_image_sized<150>>>>>>>>>>>>>;
    }
}}

// SAFETY: `cpp_class!` needs C++ types that are relocatable (moved with memcpy, as Rust moves
// values), default-constructible, copyable and destructible without throwing. Read in dlib
// 19.24's headers: both types hold their data only through heap owners (std::vector,
// dlib::array, std::unique_ptr, std::shared_ptr, dlib::any) and plain numbers, no pointer
// into themselves and no std::string, so a memcpy'd copy is the same object. Their copy
// constructors deep-copy (a cloned encoder shares no weights buffer it writes to).
cpp_class!(unsafe struct HogInner as "dlib::frontal_face_detector");
cpp_class!(unsafe struct EncoderInner as "lookalike_shim::encoder_net");

/// A detection in the coordinates of the image it ran on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
    /// HOG SVM score; 0 is dlib's default threshold, higher is more confident.
    pub score: f64,
}

/// dlib's HOG + linear SVM frontal face detector. `Send`, not `Sync`: one per worker.
pub struct HogDetector {
    inner: HogInner,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl HogDetector {
    pub fn new() -> Self {
        // SAFETY: no arguments; dlib returns the detector by value (its built-in model, no
        // I/O), which becomes the Rust-owned `HogInner` (same C++ type, see cpp_class! above).
        let inner = unsafe {
            cpp!([] -> HogInner as "dlib::frontal_face_detector" {
                return dlib::get_frontal_face_detector();
            })
        };
        Self { inner, _not_sync: std::marker::PhantomData }
    }

    /// Runs the detector (no upsampling: the caller resizes). `max` bounds the output.
    pub fn detect(&mut self, image: &ImageMatrix, max: usize) -> Result<Vec<RawDetection>, String> {
        let mut out = vec![0f64; max * 5];
        let buf = out.as_mut_ptr();
        let det = &mut self.inner;
        // SAFETY: `det` is an exclusive borrow of the detector (dlib's operator() mutates its
        // scratch buffers; `&mut self` and !Sync keep it to one thread); `image` is a live
        // dlib matrix borrowed for the call; `buf` holds `max * 5` doubles and the C++ writes
        // at most `min(max, dets.size()) * 5` of them; every exception is caught in C++.
        let n = unsafe {
            cpp!([det as "dlib::frontal_face_detector*", image as "const dlib::matrix<dlib::rgb_pixel>*",
                  buf as "double*", max as "size_t"] -> i64 as "int64_t" {
                try {
                    std::vector<dlib::rect_detection> dets;
                    (*det)(*image, dets, 0.0);
                    std::sort(dets.begin(), dets.end(), [](const dlib::rect_detection& a, const dlib::rect_detection& b) {
                        return a.detection_confidence > b.detection_confidence;
                    });
                    size_t n = std::min(max, dets.size());
                    for (size_t i = 0; i < n; ++i) {
                        buf[i*5+0] = dets[i].rect.left();
                        buf[i*5+1] = dets[i].rect.top();
                        buf[i*5+2] = dets[i].rect.right();
                        buf[i*5+3] = dets[i].rect.bottom();
                        buf[i*5+4] = dets[i].detection_confidence;
                    }
                    return (int64_t)n;
                } catch (...) {
                    return -1;
                }
            })
        };
        if n < 0 {
            return Err("dlib face detector failed".into());
        }
        out.truncate(n as usize * 5);
        Ok(out
            .chunks_exact(5)
            .map(|c| RawDetection { left: c[0], top: c[1], right: c[2], bottom: c[3], score: c[4] })
            .collect())
    }
}

impl Default for HogDetector {
    fn default() -> Self {
        Self::new()
    }
}

/// The 128-d ResNet face encoder. `Send`, not `Sync`: one per worker.
pub struct FaceEncoder {
    inner: EncoderInner,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl Clone for FaceEncoder {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), _not_sync: std::marker::PhantomData }
    }
}

impl FaceEncoder {
    pub fn open(path: &Path) -> Result<Self, String> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("model path {} contains a NUL byte", path.display()))?;
        let mut inner = EncoderInner::default();
        let file = c_path.as_ptr();
        // The C++ deserializes into the network: it needs an exclusive borrow (a pointer made
        // from a shared one must not be written through).
        let net = &mut inner;
        // SAFETY: `file` is the NUL-terminated `c_path`, alive until the end of this function;
        // `net` is the only reference to `inner` during the call; deserialize errors
        // (missing file, wrong network type) are exceptions, caught in C++.
        let ok = unsafe {
            cpp!([file as "const char*", net as "lookalike_shim::encoder_net*"] -> bool as "bool" {
                try {
                    dlib::deserialize(file) >> *net;
                    return true;
                } catch (...) {
                    return false;
                }
            })
        };
        if ok {
            Ok(Self { inner, _not_sync: std::marker::PhantomData })
        } else {
            Err(format!("cannot load the face encoder from {}", path.display()))
        }
    }

    /// Encodes each face (given by its 5-point landmarks) into `out` (128 floats per face).
    /// With `jitters > 1` each face is encoded as the mean over that many randomly jittered
    /// copies of its chip, drawn from a generator seeded with `seed` (deterministic and
    /// private to this call, so parallel workers never share random state). With `mirror`
    /// (and no jitter, whose random copies already include mirror images) each face is the
    /// mean of its chip's and its mirrored chip's embeddings.
    pub fn encode(
        &mut self,
        image: &ImageMatrix,
        faces: &[FaceLandmarks],
        jitters: u32,
        seed: u64,
        mirror: bool,
    ) -> Result<Vec<[f32; 128]>, String> {
        let n = faces.len();
        let mut out = vec![[0f32; 128]; n];
        if n == 0 {
            return Ok(out);
        }
        let buf = out.as_mut_ptr() as *mut f32;
        let shapes = faces.as_ptr();
        let net = &mut self.inner;
        // SAFETY: `net` is an exclusive borrow (the forward pass writes the network's
        // activations); `image` and `faces` are live for the call, `shapes[0..n]` are
        // dlib::full_object_detection (what `FaceLandmarks` wraps); `buf` holds n * 128
        // floats and the C++ writes exactly i * 128 + k for i < n, k < 128 (the net's output
        // is 128-d); exceptions are caught in C++.
        let ok = unsafe {
            cpp!([net as "lookalike_shim::encoder_net*", image as "const dlib::matrix<dlib::rgb_pixel>*",
                  shapes as "const dlib::full_object_detection*", n as "size_t", jitters as "uint32_t",
                  seed as "uint64_t", mirror as "bool", buf as "float*"] -> bool as "bool" {
                try {
                    std::vector<dlib::chip_details> details;
                    for (size_t i = 0; i < n; ++i)
                        details.push_back(dlib::get_face_chip_details(shapes[i], 150, 0.25));
                    dlib::array<dlib::matrix<dlib::rgb_pixel>> chips;
                    dlib::extract_image_chips(*image, details, chips);
                    if (jitters <= 1) {
                        std::vector<dlib::matrix<dlib::rgb_pixel>> batch(chips.begin(), chips.end());
                        if (mirror)
                            for (size_t i = 0; i < n; ++i) batch.push_back(dlib::fliplr(chips[i]));
                        auto descs = (*net)(batch, 16);
                        for (size_t i = 0; i < n; ++i)
                            for (long k = 0; k < 128; ++k)
                                buf[i*128+k] = mirror ? 0.5f * (descs[i](k) + descs[n+i](k)) : descs[i](k);
                    } else {
                        dlib::rand rnd;
                        rnd.set_seed(std::to_string(seed));
                        for (size_t i = 0; i < n; ++i) {
                            std::vector<dlib::matrix<dlib::rgb_pixel>> crops;
                            for (uint32_t j = 0; j < jitters; ++j) crops.push_back(dlib::jitter_image(chips[i], rnd));
                            auto descs = (*net)(crops, 16);
                            dlib::matrix<float,0,1> mean = dlib::mean(dlib::mat(descs));
                            for (long k = 0; k < 128; ++k) buf[i*128+k] = mean(k);
                        }
                    }
                    return true;
                } catch (...) {
                    return false;
                }
            })
        };
        if ok {
            Ok(out)
        } else {
            Err("dlib face encoder failed".into())
        }
    }
}

/// An aligned square face chip (RGB8, `size` x `size`), the same alignment the encoder uses.
pub fn face_chip(image: &ImageMatrix, face: &FaceLandmarks, size: u32, padding: f64) -> Result<Vec<u8>, String> {
    let size = size.clamp(16, 1024) as usize;
    let mut out = vec![0u8; size * size * 3];
    let buf = out.as_mut_ptr();
    // SAFETY: `image` and `face` are live dlib objects borrowed for the call; `buf` holds
    // size * size * 3 bytes and extract_image_chip makes a chip of exactly size x size, so
    // the writes at (r * size + c) * 3 + 2 < size * size * 3 stay inside; exceptions are
    // caught in C++.
    let ok = unsafe {
        cpp!([image as "const dlib::matrix<dlib::rgb_pixel>*", face as "const dlib::full_object_detection*",
              size as "size_t", padding as "double", buf as "uint8_t*"] -> bool as "bool" {
            try {
                dlib::matrix<dlib::rgb_pixel> chip;
                dlib::extract_image_chip(*image, dlib::get_face_chip_details(*face, size, padding), chip);
                for (long r = 0; r < chip.nr(); ++r)
                    for (long c = 0; c < chip.nc(); ++c) {
                        const dlib::rgb_pixel& p = chip(r, c);
                        size_t o = (r * size + c) * 3;
                        buf[o] = p.red; buf[o+1] = p.green; buf[o+2] = p.blue;
                    }
                return true;
            } catch (...) {
                return false;
            }
        })
    };
    if ok {
        Ok(out)
    } else {
        Err("dlib could not extract a face chip".into())
    }
}
