"""Procedural backgrounds (four scene families) and the shaded human figure, drawn with OpenCV.

Images are BGR uint8 (OpenCV order). Backgrounds are drawn once per video on a canvas larger than the
frame, so small camera motion is a cheap `cv2.warpAffine` per frame. Scene families differ by layout and
structure (horizon, walls, windows, buildings, sea, lines); their colours are randomised widely so a
class cannot be read from a single pixel colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from csvr.data_manifests.synthetic import skeleton as sk

SCENES = ("room", "field", "beach", "street")
SHIFT = 4                      # OpenCV fixed-point sub-pixel bits
ONE = 1 << SHIFT


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One BGR colour (float 0..255) from hue in degrees and s, v in 0..1."""
    px = np.uint8([[[int(h / 2) % 180, int(s * 255), int(v * 255)]]])
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)


def _vgrad(h: int, w: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    a = np.linspace(0.0, 1.0, h)[:, None, None]
    return np.ascontiguousarray(np.broadcast_to(top * (1 - a) + bottom * a, (h, w, 3)), dtype=np.float32)


def _texture(rng: np.random.Generator, h: int, w: int, scale: int, amp: float) -> np.ndarray:
    """Smooth value noise (h, w, 1) float32 in about [-amp, amp]."""
    small = rng.standard_normal((max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * amp)[:, :, None]


def _c(col: np.ndarray) -> tuple[int, int, int]:
    col = np.clip(col, 0, 255)
    return (int(col[0]), int(col[1]), int(col[2]))


def _sky(rng, h, w):
    if rng.random() < 0.75:
        top, bottom = _hsv(rng.uniform(195, 225), rng.uniform(0.35, 0.7), rng.uniform(0.7, 0.95)), \
            _hsv(rng.uniform(190, 215), rng.uniform(0.1, 0.3), rng.uniform(0.9, 1.0))
    else:   # overcast or dusk
        top = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.15), rng.uniform(0.55, 0.8))
        bottom = _hsv(rng.uniform(20, 40), rng.uniform(0.1, 0.35), rng.uniform(0.8, 0.95))
    img = _vgrad(h, w, top, bottom)
    for _ in range(rng.integers(0, 5)):   # clouds
        cx, cy = rng.uniform(0, w), rng.uniform(0, h * 0.8)
        for _ in range(4):
            cv2.ellipse(img, (int(cx + rng.normal(0, 18)), int(cy + rng.normal(0, 5))),
                        (int(rng.uniform(12, 30)), int(rng.uniform(5, 10))), 0, 0, 360,
                        _c(_hsv(0, 0, rng.uniform(0.9, 1.0))), -1, cv2.LINE_AA)
    return img


def room(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """Indoor room: wall with windows/pictures/door, skirting board, wooden or tiled floor."""
    horizon = rng.uniform(0.55, 0.68) * h
    hz = int(horizon)
    wall = _hsv(rng.uniform(0, 360), rng.uniform(0.05, 0.45), rng.uniform(0.55, 0.95))
    img = np.empty((h, w, 3), np.float32)
    img[:hz] = _vgrad(hz, w, wall * 0.9, wall * 1.05) + _texture(rng, hz, w, 40, 4)
    if rng.random() < 0.4:   # wallpaper stripes
        step = int(rng.uniform(14, 30))
        for x in range(0, w, step):
            cv2.rectangle(img, (x, 0), (x + step // 3, hz), _c(wall * 0.92), -1)
    for _ in range(rng.integers(1, 4)):   # windows, pictures and a door
        kind = rng.choice(["window", "picture", "door"], p=[0.45, 0.35, 0.2])
        x0 = int(rng.uniform(0, w - 60))
        if kind == "door":
            dw, dh = int(rng.uniform(40, 55)), int(horizon * 0.8)
            col = _hsv(rng.uniform(15, 40), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7))
            cv2.rectangle(img, (x0, hz - dh), (x0 + dw, hz), _c(col), -1)
            cv2.rectangle(img, (x0, hz - dh), (x0 + dw, hz), _c(col * 0.6), 2)
            cv2.circle(img, (x0 + dw - 8, hz - dh // 2), 3, _c(_hsv(45, 0.6, 0.9)), -1)
        elif kind == "window":
            ww, wh = int(rng.uniform(45, 80)), int(rng.uniform(35, 60))
            y0 = int(rng.uniform(8, max(10, hz - wh - 25)))
            sky = _sky(rng, wh, ww)
            img[y0:y0 + wh, x0:x0 + ww] = sky[: max(0, min(wh, h - y0)), : max(0, min(ww, w - x0))]
            frame = _hsv(0, 0, rng.uniform(0.85, 1.0))
            cv2.rectangle(img, (x0, y0), (x0 + ww, y0 + wh), _c(frame), 3)
            cv2.line(img, (x0 + ww // 2, y0), (x0 + ww // 2, y0 + wh), _c(frame), 2)
            cv2.line(img, (x0, y0 + wh // 2), (x0 + ww, y0 + wh // 2), _c(frame), 2)
        else:
            pw, ph = int(rng.uniform(20, 40)), int(rng.uniform(16, 30))
            y0 = int(rng.uniform(10, max(12, hz - ph - 30)))
            art = _hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.8), rng.uniform(0.4, 0.9))
            cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), _c(art), -1)
            cv2.circle(img, (x0 + pw // 3, y0 + ph // 2), ph // 4, _c(art * 0.6 + 80), -1)
            cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), _c(_hsv(30, 0.5, 0.35)), 2)
    floor = _hsv(rng.uniform(15, 40), rng.uniform(0.25, 0.7), rng.uniform(0.35, 0.8)) \
        if rng.random() < 0.55 else _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.5), rng.uniform(0.35, 0.85))
    fh = h - hz
    img[hz:] = _vgrad(fh, w, floor * 0.85, floor * 1.1) + _texture(rng, fh, w, 25, 5)
    vx = w * rng.uniform(0.3, 0.7)
    if rng.random() < 0.6:   # planks converging to a vanishing point
        for k in range(-12, 13):
            xb = vx + k * w / 7
            cv2.line(img, (int(vx + k * w / 40), hz), (int(xb), h), _c(floor * 0.75), 1, cv2.LINE_AA)
    else:                     # tiles
        for k in range(-12, 13):
            cv2.line(img, (int(vx + k * w / 30), hz), (int(vx + k * w / 5), h), _c(floor * 0.8), 1, cv2.LINE_AA)
        y, gap = float(hz), 4.0
        while y < h:
            cv2.line(img, (0, int(y)), (w, int(y)), _c(floor * 0.8), 1, cv2.LINE_AA)
            y += gap
            gap *= 1.35
    cv2.rectangle(img, (0, hz - 5), (w, hz + 1), _c(wall * 0.7), -1)   # skirting board
    if rng.random() < 0.6:   # a sofa or cupboard against the wall
        x0, fw = int(rng.uniform(-20, w - 40)), int(rng.uniform(60, 110))
        col = _hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.7))
        top = hz - int(rng.uniform(28, 45))
        cv2.rectangle(img, (x0, top), (x0 + fw, hz + 8), _c(col), -1)
        cv2.rectangle(img, (x0 + 5, top + 12), (x0 + fw - 5, hz + 4), _c(col * 1.15), -1)
        cv2.rectangle(img, (x0, top), (x0 + fw, hz + 8), _c(col * 0.6), 1)
    return img, horizon


def field(rng, h, w):
    """Grass sports field: sky, tree line, mowing stripes, white lines, sometimes a goal."""
    horizon = rng.uniform(0.3, 0.45) * h
    hz = int(horizon)
    img = np.empty((h, w, 3), np.float32)
    img[:hz] = _sky(rng, hz, w)
    tree = _hsv(rng.uniform(90, 150), rng.uniform(0.4, 0.8), rng.uniform(0.15, 0.45))
    for x in range(-10, w + 10, 9):   # tree line
        r = int(rng.uniform(8, 20))
        cv2.circle(img, (x, hz - int(rng.uniform(0, r))), r, _c(tree * rng.uniform(0.8, 1.2)), -1, cv2.LINE_AA)
    grass = _hsv(rng.uniform(45, 140), rng.uniform(0.25, 0.8), rng.uniform(0.35, 0.8))   # dry .. lush
    gh = h - hz
    img[hz:] = _vgrad(gh, w, grass * 0.85, grass * 1.05) + _texture(rng, gh, w, 6, 7)
    # mowing stripes in perspective
    vx = w * rng.uniform(0.2, 0.8)
    nstripe = int(rng.integers(6, 12))
    for k in range(-nstripe, nstripe, 2):
        pts = np.array([[vx + k * w / 40, hz], [vx + (k + 1) * w / 40, hz],
                        [vx + (k + 1) * w / 4, h], [vx + k * w / 4, h]], np.int32)
        cv2.fillConvexPoly(img, pts, _c(grass * 1.12), cv2.LINE_AA)
    img[hz:] += _texture(rng, gh, w, 3, 6)
    line = _c(_hsv(0, 0, 0.95))
    yl = int(hz + gh * rng.uniform(0.15, 0.35))
    cv2.line(img, (0, yl), (w, yl + int(rng.uniform(-6, 6))), line, 2, cv2.LINE_AA)
    if rng.random() < 0.6:   # goal frame
        gx, gw, gt = int(rng.uniform(10, w - 110)), int(rng.uniform(70, 110)), int(rng.uniform(30, 45))
        cv2.rectangle(img, (gx, yl - gt), (gx + gw, yl), line, 3, cv2.LINE_AA)
        for k in range(1, 8):
            cv2.line(img, (gx + k * gw // 8, yl - gt), (gx + k * gw // 8, yl), _c(_hsv(0, 0, 0.8)), 1)
    return img, horizon


def beach(rng, h, w):
    """Beach: sky, sea band with wave streaks and foam, sand with speckles, maybe a parasol."""
    horizon = rng.uniform(0.3, 0.42) * h
    hz = int(horizon)
    img = np.empty((h, w, 3), np.float32)
    img[:hz] = _sky(rng, hz, w)
    shore = int(hz + (h - hz) * rng.uniform(0.2, 0.4))
    sea = _hsv(rng.uniform(150, 225), rng.uniform(0.3, 0.85), rng.uniform(0.35, 0.8))
    img[hz:shore] = _vgrad(shore - hz, w, sea * 0.8, sea * 1.15)
    for _ in range(60):   # wave streaks
        y = int(rng.uniform(hz + 2, shore))
        x = int(rng.uniform(0, w))
        ln = int(rng.uniform(6, 30) * (y - hz + 5) / (shore - hz + 5))
        cv2.line(img, (x, y), (x + ln, y), _c(sea * 1.35 + 20), 1, cv2.LINE_AA)
    sand = _hsv(rng.uniform(20, 60), rng.uniform(0.05, 0.5), rng.uniform(0.45, 0.95))
    img[shore:] = _vgrad(h - shore, w, sand * 0.92, sand * 1.05) + _texture(rng, h - shore, w, 2, 9)
    xs = np.arange(w + 20, dtype=np.float64)
    ph, amp = rng.uniform(0, 6), rng.uniform(2, 5)
    foam = np.stack([xs, shore + amp * np.sin(xs / rng.uniform(15, 35) + ph)], 1).astype(np.int32)
    cv2.polylines(img, [foam], False, _c(_hsv(0, 0, 0.97)), 3, cv2.LINE_AA)
    cv2.polylines(img, [foam + [0, 4]], False, _c(sand * 0.8), 2, cv2.LINE_AA)   # wet sand
    if rng.random() < 0.5:   # parasol
        px, py = int(rng.uniform(20, w - 20)), int(shore + (h - shore) * rng.uniform(0.1, 0.4))
        col = _hsv(rng.uniform(0, 360), 0.8, 0.9)
        cv2.line(img, (px, py), (px, py - 45), _c(_hsv(0, 0, 0.3)), 2)
        cv2.ellipse(img, (px, py - 45), (30, 14), 0, 180, 360, _c(col), -1, cv2.LINE_AA)
    return img, horizon


def street(rng, h, w):
    """City street: buildings with window grids, sidewalk, road with dashed lane markings."""
    horizon = rng.uniform(0.45, 0.6) * h
    hz = int(horizon)
    img = np.empty((h, w, 3), np.float32)
    img[:hz] = _sky(rng, hz, w)
    x = int(rng.uniform(-30, 0))
    while x < w:
        bw = int(rng.uniform(40, 90))
        top = int(rng.uniform(0, hz * 0.6))
        col = _hsv(rng.uniform(0, 360), rng.uniform(0.05, 0.45), rng.uniform(0.35, 0.85))
        cv2.rectangle(img, (x, top), (x + bw, hz), _c(col), -1)
        win = _hsv(rng.uniform(190, 230), rng.uniform(0.1, 0.4), rng.uniform(0.25, 0.6)) \
            if rng.random() < 0.7 else _hsv(45, 0.4, 0.9)
        sx, sy = int(rng.uniform(9, 14)), int(rng.uniform(11, 16))
        for yy in range(top + 6, hz - 14, sy):
            for xx in range(x + 5, x + bw - 8, sx):
                cv2.rectangle(img, (xx, yy), (xx + sx // 2, yy + sy // 2), _c(win), -1)
        cv2.rectangle(img, (x, top), (x + bw, hz), _c(col * 0.7), 1)
        x += bw + int(rng.uniform(0, 6))
    walk_y = hz + int((h - hz) * rng.uniform(0.08, 0.15))
    pave = _hsv(rng.uniform(0, 60), rng.uniform(0.0, 0.35), rng.uniform(0.5, 0.85))
    img[hz:walk_y] = pave
    for xx in range(0, w, 16):
        cv2.line(img, (xx, hz), (xx - 6, walk_y), _c(pave * 0.85), 1)
    road = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.2), rng.uniform(0.2, 0.55))
    img[walk_y:] = _vgrad(h - walk_y, w, road, road * 1.1) + _texture(rng, h - walk_y, w, 2, 5)
    cv2.line(img, (0, walk_y), (w, walk_y), _c(pave * 1.15), 3)   # curb
    ly = int(walk_y + (h - walk_y) * rng.uniform(0.45, 0.7))
    mark = _c(_hsv(rng.choice([0.0, 50.0]), rng.choice([0.0, 0.8]), 0.92))
    off = int(rng.uniform(0, 40))
    for xx in range(-off, w, 40):
        cv2.rectangle(img, (xx, ly), (xx + 22, ly + 3), mark, -1)
    if rng.random() < 0.6:   # lamppost
        lx = int(rng.uniform(10, w - 10))
        cv2.line(img, (lx, walk_y), (lx, int(hz * 0.25)), _c(_hsv(0, 0, 0.2)), 3)
        cv2.line(img, (lx, int(hz * 0.25)), (lx + 14, int(hz * 0.25)), _c(_hsv(0, 0, 0.2)), 3)
    return img, horizon


SCENE_FUNCS = {"room": room, "field": field, "beach": beach, "street": street}


def background(scene: str, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """A (h, w, 3) uint8 BGR background of `scene` and its horizon row (feet go below it)."""
    if scene not in SCENE_FUNCS:
        raise ValueError(f"unknown scene {scene!r}; expected one of {SCENES}")
    img, horizon = SCENE_FUNCS[scene](rng, h, w)
    return np.clip(img, 0, 255).astype(np.uint8), horizon


# --------------------------------------------------------------------------------------------
# The figure

@dataclass
class Appearance:
    """Clothing and body colours (BGR floats) and limb thicknesses (in body units) of one actor."""

    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    shoes: np.ndarray
    long_sleeves: bool
    girth: float        # body thickness multiplier
    hair_long: bool

    @staticmethod
    def random(rng: np.random.Generator) -> "Appearance":
        skin = _hsv(rng.uniform(15, 32), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95))
        hair = _hsv(rng.uniform(10, 40), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.55))
        shirt = _hsv(rng.uniform(0, 360), rng.uniform(0.1, 0.9), rng.uniform(0.25, 0.95))
        pants = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.7), rng.uniform(0.15, 0.7))
        shoes = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.4), rng.uniform(0.05, 0.9))
        return Appearance(skin, hair, shirt, pants, shoes, bool(rng.random() < 0.5),
                          float(rng.uniform(0.85, 1.2)), bool(rng.random() < 0.35))


def _pt(p: np.ndarray) -> tuple[int, int]:
    return (int(round(p[0] * ONE)), int(round(p[1] * ONE)))


def _capsule(img: np.ndarray, a: np.ndarray, b: np.ndarray, thick: float, col: np.ndarray,
             light: np.ndarray) -> None:
    """A shaded limb: dark rim, base colour, and a lit stripe on the side facing the light."""
    t = max(2, int(round(thick)))
    cv2.line(img, _pt(a), _pt(b), _c(col * 0.55), t + 2, cv2.LINE_AA, SHIFT)
    cv2.line(img, _pt(a), _pt(b), _c(col), t, cv2.LINE_AA, SHIFT)
    if t >= 4:
        o = light * thick * 0.22
        cv2.line(img, _pt(a + o), _pt(b + o), _c(col * 1.25 + 12), max(1, int(t * 0.35)), cv2.LINE_AA, SHIFT)


def draw_figure(img: np.ndarray, j: np.ndarray, neck: np.ndarray, pelvis: np.ndarray, head: np.ndarray,
                toes: np.ndarray, scale: float, app: Appearance, view: str, facing: int,
                light: np.ndarray) -> None:
    """Draw one frame of the figure in place. `j` (17, 2), other points in image pixels; `scale`
    is the standing height in pixels."""
    g = app.girth
    arm_t = 0.055 * scale * g
    fore_t = 0.045 * scale * g
    thigh_t = 0.075 * scale * g
    shin_t = 0.058 * scale * g
    sleeve = app.shirt if app.long_sleeves else app.skin

    def arm(sh, el, wr, dim):
        _capsule(img, j[sh], j[el], arm_t, app.shirt * dim, light)
        _capsule(img, j[el], j[wr], fore_t, sleeve * dim, light)
        cv2.circle(img, _pt(j[wr] + (j[wr] - j[el]) * 0.18), int(round(0.028 * scale * ONE)),
                   _c(app.skin * dim), -1, cv2.LINE_AA, SHIFT)

    def leg(hi, kn, an, toe, dim):
        _capsule(img, j[hi], j[kn], thigh_t, app.pants * dim, light)
        _capsule(img, j[kn], j[an], shin_t, app.pants * dim, light)
        _capsule(img, j[an], toe, 0.045 * scale, app.shoes * dim, light)

    axis = neck - pelvis
    axis_n = axis / (np.linalg.norm(axis) + 1e-6)
    perp = np.array([-axis_n[1], axis_n[0]])

    def torso():
        if view == "side":
            ws, wh = 0.075 * scale * g, 0.07 * scale * g
        else:
            ws = max(abs(j[sk.LSHO, 0] - j[sk.RSHO, 0]) / 2 + 0.035 * scale, 0.06 * scale) * g
            wh = max(abs(j[sk.LHIP, 0] - j[sk.RHIP, 0]) / 2 + 0.045 * scale, 0.055 * scale) * g
        top = neck - axis_n * 0.01 * scale
        bot = pelvis - axis_n * 0.03 * scale
        quad = np.array([top + perp * ws, top - perp * ws, bot - perp * wh, bot + perp * wh])
        cv2.fillConvexPoly(img, (quad * ONE).astype(np.int32), _c(app.shirt * 0.55), cv2.LINE_AA, SHIFT)
        inner = (quad - quad.mean(0)) * 0.93 + quad.mean(0)
        cv2.fillConvexPoly(img, (inner * ONE).astype(np.int32), _c(app.shirt), cv2.LINE_AA, SHIFT)
        hl = inner.mean(0) + light * ws * 0.3
        cv2.ellipse(img, _pt(hl), (int(ws * 0.45 * ONE), int(np.linalg.norm(axis) * 0.33 * ONE)),
                    float(np.degrees(np.arctan2(axis_n[1], axis_n[0]))) + 90, 0, 360,
                    _c(app.shirt * 1.15 + 10), -1, cv2.LINE_AA, SHIFT)
        # belt / trousers top
        b = bot + axis_n * 0.035 * scale
        cv2.line(img, _pt(b + perp * wh), _pt(b - perp * wh), _c(app.pants), int(max(2, 0.05 * scale)),
                 cv2.LINE_AA, SHIFT)

    def head_():
        _capsule(img, neck, head, 0.05 * scale, app.skin, light)
        r = sk.HEAD_R * scale
        cv2.circle(img, _pt(head), int(round((r + 1) * ONE)), _c(app.skin * 0.55), -1, cv2.LINE_AA, SHIFT)
        cv2.circle(img, _pt(head), int(round(r * ONE)), _c(app.skin), -1, cv2.LINE_AA, SHIFT)
        cv2.circle(img, _pt(head + light * r * 0.35), int(round(r * 0.45 * ONE)), _c(app.skin * 1.12 + 8),
                   -1, cv2.LINE_AA, SHIFT)
        ang = float(np.degrees(np.arctan2(axis_n[1], axis_n[0])))      # "up" of the head, image angle
        face_dx = j[sk.NOSE, 0] - head[0]
        hair_ang = ang - 45 * float(np.clip(face_dx / r, -1, 1))          # hair sits away from the face
        span = 105 if app.hair_long else 80
        cv2.ellipse(img, _pt(head), (int((r + 1) * ONE), int((r + 1) * ONE)), 0, hair_ang - span,
                    hair_ang + span, _c(app.hair), -1, cv2.LINE_AA, SHIFT)
        eye_r = max(ONE, int(0.012 * scale * ONE))
        for e in (sk.LEYE, sk.REYE):
            if view == "side" and ((facing > 0) == (e == sk.LEYE)):
                continue
            cv2.circle(img, _pt(j[e]), eye_r, (30, 30, 40), -1, cv2.LINE_AA, SHIFT)

    if view == "side":
        far_l = facing > 0      # facing right shows the right side: left limbs are far
        far = (sk.LSHO, sk.LELB, sk.LWRI, sk.LHIP, sk.LKNE, sk.LANK, 0) if far_l else \
            (sk.RSHO, sk.RELB, sk.RWRI, sk.RHIP, sk.RKNE, sk.RANK, 1)
        near = (sk.RSHO, sk.RELB, sk.RWRI, sk.RHIP, sk.RKNE, sk.RANK, 1) if far_l else \
            (sk.LSHO, sk.LELB, sk.LWRI, sk.LHIP, sk.LKNE, sk.LANK, 0)
        arm(far[0], far[1], far[2], 0.75)
        leg(far[3], far[4], far[5], toes[far[6]], 0.75)
        torso()
        leg(near[3], near[4], near[5], toes[near[6]], 1.0)
        head_()
        arm(near[0], near[1], near[2], 1.0)
    else:
        leg(sk.LHIP, sk.LKNE, sk.LANK, toes[0], 0.95)
        leg(sk.RHIP, sk.RKNE, sk.RANK, toes[1], 0.95)
        torso()
        head_()
        arm(sk.LSHO, sk.LELB, sk.LWRI, 1.0)
        arm(sk.RSHO, sk.RELB, sk.RWRI, 1.0)


def draw_shadow(img: np.ndarray, center: np.ndarray, rx: float, ry: float, strength: float) -> None:
    """Darken an elliptical patch of the ground under the figure (in place)."""
    x0, x1 = int(max(0, center[0] - rx - 2)), int(min(img.shape[1], center[0] + rx + 3))
    y0, y1 = int(max(0, center[1] - ry - 2)), int(min(img.shape[0], center[1] + ry + 3))
    if x1 <= x0 or y1 <= y0 or rx < 1:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(mask, _pt(center - [x0, y0]), (int(rx * ONE), int(max(1, ry) * ONE)), 0, 0, 360, 255, -1,
                cv2.LINE_AA, SHIFT)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, ry * 0.5))
    roi = img[y0:y1, x0:x1]
    f = 1.0 - strength * (mask.astype(np.float32) / 255.0)
    roi[:] = (roi * f[:, :, None]).astype(np.uint8)
