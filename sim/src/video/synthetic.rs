//! [`SyntheticSource`]: a deterministic synthetic endoscopy video with ground
//! truth, fast enough to feed a live pipeline at 1080p30 or 720p60 on one core.
//!
//! Per frame: crop the current site's precomputed texture at the camera's
//! position, blend in the lesion sprites (recording their boxes), apply the
//! optics (field of view, lumen, sensor noise) and, during a motion-blur
//! episode, blur. Freezes hand out the previous buffer again, black frames
//! are noise only, dropouts return `None`. The scene (site, camera, lesions)
//! advances with video time whatever the frame's fate.

use super::blur::{motion_blur, BlurScratch};
use super::camera::Camera;
use super::config::SyntheticConfig;
use super::episodes::{Directive, Episodes};
use super::error::VideoError;
use super::frame::SyntheticFrame;
use super::labels::{Episode, Site};
use super::lesions::Lesions;
use super::optics::Optics;
use super::pool::BufferPool;
use super::random::{stream, VRng};
use super::texture::{SiteLook, Texture};

/// A synthetic endoscopy camera. The same config gives bit-identical frames.
pub struct SyntheticSource {
    cfg: SyntheticConfig,
    w: usize,
    h: usize,
    tex_size: (usize, usize),
    /// One texture per site, in [`Site::ALL`] order.
    textures: Vec<Texture>,
    optics: Optics,
    scene_rng: VRng,
    site: Site,
    site_until: f64,
    camera: Camera,
    lesions: Lesions,
    episodes: Episodes,
    pool: BufferPool,
    blur: BlurScratch,
    index: u64,
    last: Option<SyntheticFrame>,
}

impl std::fmt::Debug for SyntheticSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyntheticSource")
            .field("cfg", &self.cfg)
            .field("index", &self.index)
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

/// A per-frame seed for the sensor noise.
fn frame_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 29)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 32)
}

impl SyntheticSource {
    /// Validate `cfg` and render the site textures (a fraction of a second at
    /// 720p).
    pub fn new(cfg: SyntheticConfig) -> Result<Self, VideoError> {
        cfg.validate()?;
        let (w, h) = (cfg.width as usize, cfg.height as usize);
        let scale = h as f32 / 720.0;
        // Larger than the frame so the wrap-around repeats rarely.
        let tex_size = (w + w / 4, h + h / 4);
        let textures = Site::ALL
            .iter()
            .map(|&site| {
                let mut rng = VRng::new(cfg.seed, stream::TEXTURE + site.index() as u64);
                Texture::render(site, tex_size.0, tex_size.1, scale, &mut rng)
            })
            .collect();
        let optics = Optics::new(w, h, &mut VRng::new(cfg.seed, stream::NOISE));
        let mut scene_rng = VRng::new(cfg.seed, stream::SCENE);
        let site = Site::ALL.get(scene_rng.below(3) as usize).copied().unwrap_or(Site::Colon);
        let site_until = scene_rng.range(cfg.site_dwell_s[0], cfg.site_dwell_s[1]);
        let camera = Camera::new(0.0, tex_size, (w, h), cfg.pan_speed, &mut scene_rng);
        let lesions = Lesions::new(cfg.lesions.clone(), w, h, VRng::new(cfg.seed, stream::LESIONS));
        let episodes = Episodes::new(cfg.episodes.clone(), VRng::new(cfg.seed, stream::EPISODES));
        Ok(Self {
            pool: BufferPool::new(w * h * 3),
            blur: BlurScratch::default(),
            cfg,
            w,
            h,
            tex_size,
            textures,
            optics,
            scene_rng,
            site,
            site_until,
            camera,
            lesions,
            episodes,
            index: 0,
            last: None,
        })
    }

    pub fn config(&self) -> &SyntheticConfig {
        &self.cfg
    }

    pub fn width(&self) -> u32 {
        self.cfg.width
    }

    pub fn height(&self) -> u32 {
        self.cfg.height
    }

    pub fn fps(&self) -> f64 {
        self.cfg.fps
    }

    /// Index the next call to [`Self::next_frame`] will use.
    pub fn next_index(&self) -> u64 {
        self.index
    }

    /// Move to another site: new camera path, no lesions.
    fn change_site(&mut self, t: f64) {
        let others: Vec<Site> = Site::ALL.iter().copied().filter(|&s| s != self.site).collect();
        if let Some(&s) = others.get(self.scene_rng.below(others.len() as u64) as usize) {
            self.site = s;
        }
        let [lo, hi] = self.cfg.site_dwell_s;
        self.site_until = t + self.scene_rng.range(lo, hi);
        self.camera = Camera::new(t, self.tex_size, (self.w, self.h), self.cfg.pan_speed, &mut self.scene_rng);
        self.lesions.clear(t);
    }

    /// The next frame, or `None` for a dropped frame (the index still advances).
    pub fn next_frame(&mut self) -> Option<SyntheticFrame> {
        let index = self.index;
        self.index += 1;
        let dt = 1.0 / self.cfg.fps;
        let t = index as f64 * dt;
        if t >= self.site_until {
            self.change_site(t);
        }
        let look = SiteLook::of(self.site);
        let cam = self.camera.offset(t);
        self.lesions.step(t, dt, cam, look.light);

        let directive = self.episodes.at(t);
        match (directive, &self.last) {
            (Directive::Dropout, _) => return None,
            (Directive::Freeze, Some(last)) => return Some(SyntheticFrame { index, episode: Episode::Freeze, ..last.clone() }),
            _ => {}
        }

        let (w, h) = (self.w, self.h);
        let seed = frame_seed(self.cfg.seed, index);
        let mut buf = self.pool.take();
        let (truth, episode, blur_px) = if directive == Directive::Black {
            self.optics.black(&mut buf, seed);
            (Vec::new(), Episode::Black, 0.0)
        } else {
            if let Some(tex) = self.textures.get(self.site.index()) {
                tex.crop_into(cam.0 as i64, cam.1 as i64, &mut buf, w, h);
            }
            let truth = self.lesions.draw(&mut buf, w, h, cam, &self.optics);
            let (lx, ly) = self.camera.lumen(t);
            self.optics.apply(&mut buf, lx, ly, look.lumen, seed);
            match directive {
                Directive::Blur { px, dx, dy } => {
                    motion_blur(&mut buf, &mut self.blur, w, h, dx, dy, px);
                    (truth, Episode::MotionBlur, px)
                }
                _ => (truth, Episode::Clear, 0.0),
            }
        };
        let frame = SyntheticFrame {
            index,
            width: self.cfg.width,
            height: self.cfg.height,
            rgb: self.pool.share(buf),
            truth,
            site: self.site,
            episode,
            blur_px,
        };
        self.last = Some(frame.clone());
        Some(frame)
    }
}
