// The display compositor: the camera frame copied texel for texel, then
// instanced alpha-blended rectangles. Text is drawn by glyphon in the same
// render pass.

@group(0) @binding(0) var video: texture_2d<f32>;
@group(0) @binding(1) var<uniform> screen: vec4<f32>; // width, height, 0, 0

@vertex
fn vs_video(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    // One triangle covering the target.
    let p = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return vec4<f32>(p * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs_video(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    // No sampling, no filtering: the pixel under this fragment, unchanged.
    return textureLoad(video, vec2<i32>(floor(pos.xy)), 0);
}

struct RectOut {
    @builtin(position) pos: vec4<f32>,
    @location(0) colour: vec4<f32>,
};

@vertex
fn vs_rect(@builtin(vertex_index) i: u32, @location(0) rect: vec4<f32>, @location(1) colour: vec4<f32>) -> RectOut {
    let corner = vec2<f32>(f32(i & 1u), f32((i >> 1u) & 1u));
    let px = rect.xy + corner * rect.zw;
    var out: RectOut;
    out.pos = vec4<f32>(px.x / screen.x * 2.0 - 1.0, 1.0 - px.y / screen.y * 2.0, 0.0, 1.0);
    out.colour = colour;
    return out;
}

@fragment
fn fs_rect(in: RectOut) -> @location(0) vec4<f32> {
    return in.colour;
}
