//! The window output: the surgeon's monitor as a real window (winit on X11,
//! wgpu surface), and the HMI keys ([`super::hmi`]).
//!
//! The window shows what the display sink composed ([`ComposedSlot`]): the
//! same picture the snapshot, the tests and a recording get, so what was
//! checked is what is shown. Presenting copies it texel for texel into the
//! surface (`Rgba8Unorm` or `Bgra8Unorm`, never sRGB), so at the picture's
//! size the screen pixels are the composed pixels.
//!
//! winit allows one event loop per process, so the window lives for the
//! process on its own thread, outside the supervision tree: a restarted
//! display actor keeps publishing into the same slot and the window goes on
//! showing it. The thread is woken for every composed frame and for nothing
//! else; it never blocks the display sink (latest wins).

use super::composed::{ComposedFrame, ComposedSlot};
use super::gpu::{instance, open_device, picture_layout};
use super::hmi::{HmiKey, HmiPort};
use super::DisplayError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{ElementState, WindowEvent};
use winit::event_loop::{ActiveEventLoop, EventLoop, EventLoopProxy};
use winit::keyboard::{Key, NamedKey};
use winit::platform::x11::EventLoopBuilderExtX11;
use winit::window::{Window, WindowId};

/// What the window has done so far.
#[derive(Debug, Default)]
pub struct WindowStats {
    /// Pictures presented to the surface.
    pub presented: AtomicU64,
    /// Sequence number of the last picture presented.
    pub last_seq: AtomicU64,
    /// Presents that failed or were skipped (surface lost, timeout).
    pub skipped: AtomicU64,
    /// The adapter presenting, once the window is up.
    pub adapter: Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct WindowOptions {
    pub title: String,
    /// Initial inner size: the picture's size, so pixels map one to one.
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy)]
enum Wake {
    Frame,
    Stop,
}

/// A running window. Dropping it closes the window.
pub struct WindowOutput {
    proxy: EventLoopProxy<Wake>,
    stats: Arc<WindowStats>,
    closed: watch::Receiver<bool>,
    stop_waker: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl WindowOutput {
    /// Open the window (X11: `DISPLAY` must name a server) and start
    /// presenting what `slot` receives. Returns once the first picture (or a
    /// black one) is on screen, or with the reason it could not be.
    pub fn open(opts: WindowOptions, slot: Arc<ComposedSlot>, hmi: Option<HmiPort>) -> Result<WindowOutput, DisplayError> {
        let stats = Arc::new(WindowStats::default());
        let (closed_tx, closed) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<EventLoopProxy<Wake>, DisplayError>>();
        let (st, sl) = (stats.clone(), slot.clone());
        let ui = std::thread::Builder::new()
            .name("display-window".into())
            .spawn(move || {
                let event_loop = match EventLoop::<Wake>::with_user_event().with_any_thread(true).build() {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(DisplayError::Window(format!("no X11 display (is DISPLAY set?): {e}"))));
                        return;
                    }
                };
                let mut app = App {
                    opts,
                    slot: sl,
                    hmi,
                    stats: st,
                    ready: Some((ready_tx, event_loop.create_proxy())),
                    closed: closed_tx,
                    live: None,
                };
                if let Err(e) = event_loop.run_app(&mut app) {
                    tracing::error!("window: event loop ended with an error: {e}");
                }
                app.closed.send_replace(true);
            })
            .map_err(|e| DisplayError::Window(format!("cannot start the window thread: {e}")))?;
        let proxy = match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = ui.join();
                return Err(e);
            }
            Err(_) => return Err(DisplayError::Window("the window did not come up within 20 s".into())),
        };
        let stop_waker = Arc::new(AtomicBool::new(false));
        let waker = spawn_waker(slot, proxy.clone(), stop_waker.clone())?;
        Ok(WindowOutput { proxy, stats, closed, stop_waker, threads: vec![ui, waker] })
    }

    pub fn stats(&self) -> &WindowStats {
        &self.stats
    }

    /// Becomes true when the user closes the window (or it fails).
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.clone()
    }

    /// Close the window and wait for its threads.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop_waker.store(true, Ordering::Release);
        let _ = self.proxy.send_event(Wake::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for WindowOutput {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Forward "a picture was composed" to the event loop.
fn spawn_waker(slot: Arc<ComposedSlot>, proxy: EventLoopProxy<Wake>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, DisplayError> {
    let mut rx = slot.subscribe();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| DisplayError::Window(format!("cannot build the window waker: {e}")))?;
    std::thread::Builder::new()
        .name("display-window-wake".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match rt.block_on(async { tokio::time::timeout(Duration::from_millis(100), rx.changed()).await }) {
                    Err(_) => continue,
                    Ok(Err(_)) => return,
                    Ok(Ok(())) => {
                        if proxy.send_event(Wake::Frame).is_err() {
                            return; // the event loop is gone
                        }
                    }
                }
            }
        })
        .map_err(|e| DisplayError::Window(format!("cannot start the window waker: {e}")))
}

/// The keyboard, as the HMI sees it. Auto-repeat is ignored: every
/// setpoint step is a deliberate press.
fn hmi_key(key: &Key) -> Option<HmiKey> {
    match key {
        Key::Named(NamedKey::ArrowUp) => Some(HmiKey::Up),
        Key::Named(NamedKey::ArrowDown) => Some(HmiKey::Down),
        Key::Named(NamedKey::ArrowLeft) => Some(HmiKey::Left),
        Key::Named(NamedKey::ArrowRight) => Some(HmiKey::Right),
        Key::Named(NamedKey::PageUp) => Some(HmiKey::PageUp),
        Key::Named(NamedKey::PageDown) => Some(HmiKey::PageDown),
        Key::Named(NamedKey::Space) => Some(HmiKey::Pedal),
        Key::Character(c) if c.eq_ignore_ascii_case("a") => Some(HmiKey::Acknowledge),
        Key::Character(c) if c.eq_ignore_ascii_case("e") => Some(HmiKey::Enhance),
        _ => None,
    }
}

/// Tells `open` that the window is up (with the proxy to wake it) or why not.
type ReadySender = mpsc::Sender<Result<EventLoopProxy<Wake>, DisplayError>>;

struct Live {
    window: Arc<Window>,
    presenter: Presenter,
    /// The picture size the window was last fitted to.
    fitted: (u32, u32),
}

struct App {
    opts: WindowOptions,
    slot: Arc<ComposedSlot>,
    hmi: Option<HmiPort>,
    stats: Arc<WindowStats>,
    ready: Option<(ReadySender, EventLoopProxy<Wake>)>,
    closed: watch::Sender<bool>,
    live: Option<Live>,
}

impl App {
    fn present_latest(&mut self) {
        let Some(live) = self.live.as_mut() else { return };
        let stats = &self.stats;
        let outcome = self.slot.with_latest(|f| {
            // Follow the picture's size once per change, so pixels map one
            // to one; a size the user picks afterwards is kept (scaled).
            if (f.width, f.height) != live.fitted && f.width > 0 && f.height > 0 {
                live.fitted = (f.width, f.height);
                let _ = live.window.request_inner_size(PhysicalSize::new(f.width, f.height));
            }
            (f.seq, live.presenter.present(f))
        });
        match outcome {
            None => {}
            Some((seq, Ok(true))) => {
                stats.presented.fetch_add(1, Ordering::Relaxed);
                stats.last_seq.store(seq, Ordering::Release);
            }
            Some((_, Ok(false))) => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Some((seq, Err(e))) => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("window: presenting frame {seq} failed: {e}");
            }
        }
    }

    fn start(&mut self, event_loop: &ActiveEventLoop) -> Result<(), DisplayError> {
        let attrs = Window::default_attributes()
            .with_title(self.opts.title.clone())
            .with_inner_size(PhysicalSize::new(self.opts.width, self.opts.height))
            .with_position(winit::dpi::PhysicalPosition::new(0, 0));
        let window = Arc::new(event_loop.create_window(attrs).map_err(|e| DisplayError::Window(format!("create window: {e}")))?);
        // The monitor takes the HMI keys without a click first.
        window.focus_window();
        let size = window.inner_size();
        let presenter = Presenter::new(window.clone(), size.width.max(1), size.height.max(1))?;
        tracing::info!(adapter = %presenter.adapter, format = ?presenter.config.format, mode = ?presenter.config.present_mode, width = size.width, height = size.height, "window: open");
        *self.stats.adapter.lock().unwrap_or_else(|p| p.into_inner()) = Some(presenter.adapter.clone());
        let fitted = (size.width, size.height);
        self.live = Some(Live { window, presenter, fitted });
        Ok(())
    }
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.live.is_some() {
            return;
        }
        let result = self.start(event_loop);
        if result.is_ok() {
            self.present_latest();
        }
        if let Some((tx, proxy)) = self.ready.take() {
            let failed = result.is_err();
            let _ = tx.send(result.map(|()| proxy));
            if failed {
                event_loop.exit();
            }
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: Wake) {
        match event {
            Wake::Frame => self.present_latest(),
            Wake::Stop => event_loop.exit(),
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => {
                tracing::info!("window: closed by the user");
                self.closed.send_replace(true);
                event_loop.exit();
            }
            WindowEvent::Resized(size) => {
                if let Some(live) = self.live.as_mut() {
                    live.presenter.resize(size.width, size.height);
                    live.window.request_redraw();
                }
            }
            WindowEvent::RedrawRequested => self.present_latest(),
            WindowEvent::KeyboardInput { event, .. } if event.state == ElementState::Pressed && !event.repeat => {
                match (hmi_key(&event.logical_key), &self.hmi) {
                    (Some(k), Some(hmi)) => hmi.key(k),
                    (Some(k), None) => tracing::info!(?k, "window: HMI key ignored (no HMI on this window)"),
                    (None, _) => {}
                }
            }
            _ => {}
        }
    }
}

struct Sized {
    width: u32,
    height: u32,
    texture: wgpu::Texture,
    bind_group: wgpu::BindGroup,
}

/// Copies composed pictures onto the window surface.
struct Presenter {
    surface: wgpu::Surface<'static>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    config: wgpu::SurfaceConfiguration,
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::RenderPipeline,
    sizes: wgpu::Buffer,
    sized: Option<Sized>,
    adapter: String,
}

fn werr(what: &str, e: impl std::fmt::Display) -> DisplayError {
    DisplayError::Window(format!("{what}: {e}"))
}

/// The surface format: the picture's own layout if offered, else its BGRA
/// twin; never an sRGB format, which would re-encode the camera's pixels.
fn pick_format(formats: &[wgpu::TextureFormat]) -> Option<wgpu::TextureFormat> {
    use wgpu::TextureFormat::{Bgra8Unorm, Rgba8Unorm};
    [Rgba8Unorm, Bgra8Unorm].into_iter().find(|f| formats.contains(f)).or_else(|| formats.iter().copied().find(|f| !f.is_srgb()))
}

impl Presenter {
    fn new(window: Arc<Window>, width: u32, height: u32) -> Result<Presenter, DisplayError> {
        let instance = instance();
        let surface = instance.create_surface(window).map_err(|e| werr("create surface", e))?;
        let (adapter, device, queue) = open_device(&instance, Some(&surface), "endotower window")?;
        let info = adapter.get_info();
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| tracing::error!("window: wgpu error: {e}")));
        let caps = surface.get_capabilities(&adapter);
        let format = pick_format(&caps.formats)
            .ok_or_else(|| DisplayError::Window(format!("the surface offers only sRGB formats {:?}", caps.formats)))?;
        let present_mode =
            if caps.present_modes.contains(&wgpu::PresentMode::Mailbox) { wgpu::PresentMode::Mailbox } else { wgpu::PresentMode::Fifo };
        let alpha_mode = if caps.alpha_modes.contains(&wgpu::CompositeAlphaMode::Opaque) {
            wgpu::CompositeAlphaMode::Opaque
        } else {
            caps.alpha_modes.first().copied().unwrap_or(wgpu::CompositeAlphaMode::Auto)
        };
        let config = wgpu::SurfaceConfiguration {
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            format,
            width,
            height,
            present_mode,
            desired_maximum_frame_latency: 1,
            alpha_mode,
            view_formats: vec![],
            color_space: wgpu::SurfaceColorSpace::Auto,
        };
        surface.configure(&device, &config);

        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("present"),
            source: wgpu::ShaderSource::Wgsl(include_str!("present.wgsl").into()),
        });
        let layout = picture_layout(&device, "present", wgpu::ShaderStages::FRAGMENT);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("present"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("present"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState { format, blend: None, write_mask: wgpu::ColorWrites::ALL })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let sizes = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("present sizes"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let adapter = format!("{} ({:?})", info.name, info.backend);
        Ok(Presenter { surface, device, queue, config, layout, pipeline, sizes, sized: None, adapter })
    }

    fn resize(&mut self, width: u32, height: u32) {
        if width == 0 || height == 0 || (width, height) == (self.config.width, self.config.height) {
            return;
        }
        self.config.width = width;
        self.config.height = height;
        self.surface.configure(&self.device, &self.config);
    }

    fn picture_texture(&mut self, width: u32, height: u32) {
        if self.sized.as_ref().is_some_and(|s| (s.width, s.height) == (width, height)) {
            return;
        }
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("picture"),
            size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("present"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&texture.create_view(&Default::default())),
                },
                wgpu::BindGroupEntry { binding: 1, resource: self.sizes.as_entire_binding() },
            ],
        });
        self.sized = Some(Sized { width, height, texture, bind_group });
    }

    /// Show `f`. `Ok(false)`: skipped this time (surface busy or being
    /// reconfigured); the next picture will try again.
    fn present(&mut self, f: &ComposedFrame) -> Result<bool, DisplayError> {
        let expected = f.width as usize * f.height as usize * 4;
        if f.width == 0 || f.height == 0 || f.rgba.len() != expected {
            return Err(DisplayError::Window(format!("picture {}x{} has {} bytes, expected {expected}", f.width, f.height, f.rgba.len())));
        }
        self.picture_texture(f.width, f.height);
        let Some(sized) = self.sized.as_ref() else { return Ok(false) };
        self.queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &sized.texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            &f.rgba,
            wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(f.width * 4), rows_per_image: Some(f.height) },
            wgpu::Extent3d { width: f.width, height: f.height, depth_or_array_layers: 1 },
        );
        let sizes: Vec<u8> = [f.width as f32, f.height as f32, self.config.width as f32, self.config.height as f32]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        self.queue.write_buffer(&self.sizes, 0, &sizes);
        let target = match self.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(t) | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
            wgpu::CurrentSurfaceTexture::Timeout | wgpu::CurrentSurfaceTexture::Occluded => return Ok(false),
            wgpu::CurrentSurfaceTexture::Outdated | wgpu::CurrentSurfaceTexture::Lost => {
                self.surface.configure(&self.device, &self.config);
                return Ok(false);
            }
            other => return Err(DisplayError::Window(format!("surface texture: {other:?}"))),
        };
        let view = target.texture.create_view(&Default::default());
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("present") });
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("present"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
                })],
                ..Default::default()
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &sized.bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
        self.queue.submit([encoder.finish()]);
        self.queue.present(target);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_surface_format_keeps_camera_pixels_linear() {
        use wgpu::TextureFormat::*;
        assert_eq!(pick_format(&[Bgra8UnormSrgb, Bgra8Unorm]), Some(Bgra8Unorm));
        assert_eq!(pick_format(&[Bgra8Unorm, Rgba8Unorm]), Some(Rgba8Unorm));
        assert_eq!(pick_format(&[Bgra8UnormSrgb, Rgba8UnormSrgb]), None);
    }

    #[test]
    fn hmi_keys_map_and_others_are_ignored() {
        assert_eq!(hmi_key(&Key::Named(NamedKey::ArrowUp)), Some(HmiKey::Up));
        assert_eq!(hmi_key(&Key::Named(NamedKey::Space)), Some(HmiKey::Pedal));
        assert_eq!(hmi_key(&Key::Character("A".into())), Some(HmiKey::Acknowledge));
        assert_eq!(hmi_key(&Key::Character("q".into())), None);
        assert_eq!(hmi_key(&Key::Named(NamedKey::Escape)), None);
    }
}
