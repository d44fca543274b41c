// The window output: the composed picture copied to the surface. At the
// picture's own size every surface pixel is the composed pixel, unchanged
// (no sampling, no filtering); a resized window takes the nearest pixel.

@group(0) @binding(0) var picture: texture_2d<f32>;
@group(0) @binding(1) var<uniform> sizes: vec4<f32>; // picture w, h; surface w, h

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let p = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return vec4<f32>(p * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs_main(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let scale = sizes.xy / sizes.zw;
    let texel = vec2<i32>(floor(floor(pos.xy) * scale));
    let clamped = min(texel, vec2<i32>(sizes.xy) - vec2<i32>(1, 1));
    return vec4<f32>(textureLoad(picture, clamped, 0).rgb, 1.0);
}
