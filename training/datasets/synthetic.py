"""Synthetic COCO-17 keypoint data: drawn articulated people on varied backgrounds.

Each person is a 2-D articulated figure facing the camera (so the person's left is on the image
right, as in COCO's frontal annotations): torso polygon, head with hair, eyes, nose and ears,
sleeved arms and trousered (or shorts) legs, hands and shoes. Pose parameters (torso lean, arm
and leg swing, elbow and knee bends, head yaw) are drawn at random; several people per image,
drawn far-to-near so nearer people occlude farther ones, plus random occluders and backgrounds
(solid, gradient, blobs, stripes, line clutter, noise).

Annotations follow COCO: keypoint v = 2 visible, 1 labelled but occluded (covered by another
person or an occluder, or an ear hidden behind the head), 0 outside the image (x = y = 0).
``bbox`` is the silhouette's extent in the image, ``area`` its pixel count (COCO's area is the
segmentation area, which is what OKS scales by).

Everything is deterministic by seed: image i is drawn from ``default_rng([seed, i])``, so a
dataset can be generated in any order, in parallel, or one frame at a time.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.skeleton import COCO17, get_skeleton

K = 17
# COCO-17 indices
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK = 11, 12, 13, 14, 15, 16

# Body proportions as fractions of standing height (roughly 7.5 heads tall).
TORSO = 0.30  # hip centre → shoulder centre
NECK = 0.115  # shoulder centre → head centre
HEAD_R = 0.066
SHOULDER_W = 0.23
HIP_W = 0.15
UPPER_ARM, FOREARM = 0.165, 0.145
THIGH, SHIN = 0.235, 0.225
ARM_T, LEG_T = 0.052, 0.066  # limb thickness

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 128], [198, 134, 90], [141, 85, 54],
                       [92, 58, 40]], dtype=np.float64)
BACKGROUNDS = ("solid", "gradient", "blobs", "stripes", "lines", "noise")


@dataclass
class SyntheticSpec:
    """What a synthetic dataset looks like (all sizes in pixels, fractions of the image height)."""

    num_images: int = 200
    image_size: tuple[int, int] = (240, 320)  # h, w
    people: tuple[int, int] = (1, 3)  # per image, inclusive
    height: tuple[float, float] = (0.45, 0.95)  # person standing height / image height
    pose_variation: float = 1.0  # scales every joint-angle range (0 = everyone stands straight)
    occluder_prob: float = 0.25  # chance per person of a random occluder over part of the body
    outside_prob: float = 0.1  # chance per person of being placed partly outside the image
    backgrounds: tuple[str, ...] = BACKGROUNDS
    blur_prob: float = 0.2
    noise_std: float = 4.0  # sensor noise (grey levels)
    jpeg_quality: int = 92
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict | None) -> "SyntheticSpec":
        data = dict(data or {})
        names = set(cls.__dataclass_fields__)
        unknown = set(data) - names
        if unknown:
            from core.errors import UserError

            raise UserError(f"synthetic: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("image_size", "people", "height", "backgrounds"):
            if key in data:
                data[key] = tuple(data[key])
        spec = cls(**data)
        bad = set(spec.backgrounds) - set(BACKGROUNDS)
        if bad or not spec.backgrounds:
            from core.errors import UserError

            raise UserError(f"synthetic: unknown background(s) {sorted(bad)}; known: {', '.join(BACKGROUNDS)}")
        return spec


@dataclass
class PersonPose:
    """Parameters of one drawn person (angles in radians)."""

    hip: np.ndarray  # hip centre (x, y) px
    height: float
    lean: float = 0.0
    shoulder: tuple[float, float] = (0.15, 0.15)  # left, right upper-arm swing outward from straight down
    elbow: tuple[float, float] = (0.2, 0.2)  # forearm bend (signed)
    hip_swing: tuple[float, float] = (0.05, 0.05)  # thigh swing outward
    knee: tuple[float, float] = (0.0, 0.0)  # shin bend (signed)
    yaw: float = 0.0  # head turn in [-1, 1]: +1 looks towards image right
    tilt: float = 0.0  # head tilt (radians)
    width: float = 1.0  # body width factor
    colours: dict = field(default_factory=dict)
    short_sleeves: bool = False
    shorts: bool = False


def random_pose(rng: np.random.Generator, hip: np.ndarray, height: float, variation: float = 1.0) -> PersonPose:
    v = float(variation)
    side = lambda lo, hi: tuple(float(x) for x in rng.uniform(lo * v, hi * v, 2))  # noqa: E731
    raise_arm = rng.random(2) < 0.3 * min(v, 1.0)
    shoulder = np.array(side(-0.35, 1.4))
    shoulder[raise_arm] = rng.uniform(1.6, 2.9, raise_arm.sum()) * min(v, 1.0) + shoulder[raise_arm] * 0.0
    elbow = np.array(side(0.0, 1.9)) * rng.choice((-1.0, 1.0), 2)
    knee = np.array(side(0.0, 1.1)) * rng.choice((-1.0, 1.0), 2)
    return PersonPose(
        hip=np.asarray(hip, dtype=np.float64), height=float(height),
        lean=float(rng.normal(0.0, 0.12 * v)),
        shoulder=tuple(float(x) for x in shoulder), elbow=tuple(float(x) for x in elbow),
        hip_swing=side(-0.15, 0.55), knee=tuple(float(x) for x in knee),
        yaw=float(np.clip(rng.normal(0.0, 0.45 * v), -1, 1)), tilt=float(rng.normal(0.0, 0.12 * v)),
        width=float(rng.uniform(0.85, 1.2)),
        colours=random_colours(rng), short_sleeves=bool(rng.random() < 0.5), shorts=bool(rng.random() < 0.35),
    )


def random_colours(rng: np.random.Generator) -> dict:
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.1)

    def cloth():
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(40, 256)]]])
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)

    return {"skin": np.clip(skin, 0, 255), "shirt": cloth(), "pants": cloth(), "shoes": cloth() * 0.5,
            "hair": np.array([rng.uniform(10, 120)] * 3) * rng.uniform(0.7, 1.2, 3)}


def _rot(v: np.ndarray, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def skeleton_points(p: PersonPose) -> tuple[np.ndarray, dict]:
    """COCO-17 keypoints [17, 2] (image px) and extra drawing points of a posed person."""
    H = p.height
    up = np.array([math.sin(p.lean), -math.cos(p.lean)])  # y is down
    right = np.array([math.cos(p.lean), math.sin(p.lean)])
    kp = np.zeros((K, 2))
    sc = p.hip + up * TORSO * H
    for o, sho, hip in ((1, L_SHO, L_HIP), (-1, R_SHO, R_HIP)):  # o = +1: person's left = image right
        kp[sho] = sc + right * o * SHOULDER_W * p.width * H / 2
        kp[hip] = p.hip + right * o * HIP_W * p.width * H / 2
    for i, (o, sho, elb, wri) in enumerate(((1, L_SHO, L_ELB, L_WRI), (-1, R_SHO, R_ELB, R_WRI))):
        a = p.shoulder[i]
        d = -up * math.cos(a) + right * o * math.sin(a)
        kp[elb] = kp[sho] + d * UPPER_ARM * H
        kp[wri] = kp[elb] + _rot(d, o * p.elbow[i]) * FOREARM * H
    for i, (o, hip, kne, ank) in enumerate(((1, L_HIP, L_KNE, L_ANK), (-1, R_HIP, R_KNE, R_ANK))):
        a = p.hip_swing[i]
        d = -up * math.cos(a) + right * o * math.sin(a)
        kp[kne] = kp[hip] + d * THIGH * H
        kp[ank] = kp[kne] + _rot(d, o * p.knee[i]) * SHIN * H
    head_up = _rot(up, p.tilt)
    head_right = _rot(right, p.tilt)
    head = sc + up * NECK * H
    r = HEAD_R * H
    yaw = p.yaw
    kp[NOSE] = head + head_right * yaw * 0.55 * r - head_up * 0.2 * r
    for o, eye, ear in ((1, L_EYE, L_EAR), (-1, R_EYE, R_EAR)):
        kp[eye] = head + head_right * (o * 0.36 * r * (1 - 0.35 * abs(yaw)) + yaw * 0.5 * r) + head_up * 0.12 * r
        kp[ear] = head + head_right * (o * 0.95 * r - yaw * 0.25 * r) + head_up * 0.02 * r
    return kp, {"head": head, "head_r": r, "neck": sc + up * 0.03 * H, "up": up, "right": right,
                "head_up": head_up, "head_right": head_right}


def _pt(x) -> tuple[int, int]:
    # cv2 drawing with 4 fractional bits: sub-pixel accurate shapes.
    return int(round(x[0] * 16)), int(round(x[1] * 16))


def _line(img, a, b, colour, thickness):
    cv2.line(img, _pt(a), _pt(b), colour, max(int(round(thickness)), 1), cv2.LINE_AA, 4)


def _circle(img, c, r, colour):
    cv2.circle(img, _pt(c), max(int(round(r * 16)), 1), colour, -1, cv2.LINE_AA, 4)


def draw_person(img: np.ndarray, p: PersonPose, kp: np.ndarray, extra: dict, colour_of=None) -> list[bool]:
    """Draw one person (``colour_of(name)`` overrides colours, e.g. a constant id for masks).

    Returns, per keypoint, whether the person's own drawing hides it (an ear behind the head).
    """
    c = colour_of or (lambda name: tuple(float(v) for v in p.colours[name]))
    H = p.height
    arm_t, leg_t = ARM_T * H * p.width, LEG_T * H * p.width
    hidden = [False] * K
    # legs
    for hip, kne, ank, o in ((L_HIP, L_KNE, L_ANK, 1), (R_HIP, R_KNE, R_ANK, -1)):
        _line(img, kp[hip], kp[kne], c("pants"), leg_t)
        _circle(img, kp[kne], leg_t / 2, c("pants") if not p.shorts else c("skin"))
        _line(img, kp[kne], kp[ank], c("skin") if p.shorts else c("pants"), leg_t * 0.85)
        foot = kp[ank] + extra["right"] * o * leg_t * 0.9 - extra["up"] * leg_t * 0.25
        cv2.ellipse(img, _pt((kp[ank] + foot) / 2), (max(int(leg_t * 16 * 0.95), 1), max(int(leg_t * 16 * 0.45), 1)),
                    math.degrees(math.atan2(extra["right"][1], extra["right"][0])), 0, 360, c("shoes"), -1,
                    cv2.LINE_AA, 4)
    if p.shorts:  # trouser legs end above the knee
        for hip, kne in ((L_HIP, L_KNE), (R_HIP, R_KNE)):
            _line(img, kp[hip], kp[hip] + (kp[kne] - kp[hip]) * 0.6, c("pants"), leg_t * 1.08)
    # torso (shirt), hips (pants)
    pad = 0.02 * H
    torso = np.array([kp[L_SHO] + extra["right"] * pad, kp[R_SHO] - extra["right"] * pad,
                      kp[R_HIP] - extra["right"] * pad * 0.5, kp[L_HIP] + extra["right"] * pad * 0.5])
    cv2.fillPoly(img, [np.round(torso * 16).astype(np.int32)], c("shirt"), cv2.LINE_AA, 4)
    belt = np.array([kp[L_HIP] + extra["right"] * pad, kp[R_HIP] - extra["right"] * pad,
                     kp[R_HIP] - extra["right"] * pad + extra["up"] * 0.04 * H,
                     kp[L_HIP] + extra["right"] * pad + extra["up"] * 0.04 * H])
    cv2.fillPoly(img, [np.round(belt * 16).astype(np.int32)], c("pants"), cv2.LINE_AA, 4)
    _line(img, extra["neck"], extra["head"], c("skin"), arm_t * 0.9)
    # arms
    for sho, elb, wri in ((L_SHO, L_ELB, L_WRI), (R_SHO, R_ELB, R_WRI)):
        _circle(img, kp[sho], arm_t * 0.6, c("shirt"))
        _line(img, kp[sho], kp[elb], c("shirt"), arm_t)
        _circle(img, kp[elb], arm_t / 2, c("shirt") if not p.short_sleeves else c("skin"))
        if p.short_sleeves:
            _line(img, kp[sho], kp[sho] + (kp[elb] - kp[sho]) * 0.55, c("shirt"), arm_t * 1.15)
        _line(img, kp[elb], kp[wri], c("skin") if p.short_sleeves else c("shirt"), arm_t * 0.85)
        hand = kp[wri] + (kp[wri] - kp[elb]) / max(np.linalg.norm(kp[wri] - kp[elb]), 1e-6) * arm_t * 0.55
        _circle(img, hand, arm_t * 0.62, c("skin"))
    # head: ears first (behind), head disc, hair cap, face
    r = extra["head_r"]
    for ear, o in ((L_EAR, 1), (R_EAR, -1)):
        if p.yaw * o > 0.45:  # turned away from this side: the ear is behind the head
            hidden[ear] = True
            continue
        _circle(img, kp[ear], r * 0.3, c("skin"))
    _circle(img, extra["head"], r, c("skin"))
    hu, hr = extra["head_up"], extra["head_right"]
    hair_centre = extra["head"] + hu * 0.35 * r
    cv2.ellipse(img, _pt(hair_centre), (max(int(r * 16 * 1.02), 1), max(int(r * 16 * 0.7), 1)),
                math.degrees(math.atan2(hr[1], hr[0])), 180, 360, c("hair"), -1, cv2.LINE_AA, 4)
    for eye in (L_EYE, R_EYE):
        _circle(img, kp[eye], r * 0.17, c("eye"))
    _circle(img, kp[NOSE], r * 0.16, c("nose"))
    return hidden


def _colour_with_face(p: PersonPose) -> dict:
    cols = dict(p.colours)
    cols["eye"] = np.array([25.0, 25.0, 35.0])
    cols["nose"] = cols["skin"] * 0.72
    return cols


def draw_background(rng: np.random.Generator, h: int, w: int, kinds=BACKGROUNDS) -> np.ndarray:
    kind = kinds[rng.integers(len(kinds))]
    base = rng.uniform(30, 230, 3)
    if kind == "solid":
        img = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind == "gradient":
        other = rng.uniform(30, 230, 3)
        t = np.linspace(0, 1, h if rng.random() < 0.5 else w)
        ramp = base + (other - base) * t[:, None]
        img = np.broadcast_to(ramp[:, None] if len(t) == h else ramp[None], (h, w, 3)).copy()
    elif kind == "stripes":
        img = np.broadcast_to(base, (h, w, 3)).copy()
        period = rng.uniform(8, 40)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        phase = (xx * math.cos(ang) + yy * math.sin(ang)) / period
        img[(phase % 1.0) < 0.5] = rng.uniform(30, 230, 3)
    else:
        img = np.broadcast_to(base, (h, w, 3)).copy()
        if kind == "noise":
            scale = rng.uniform(2, 20)
            small = rng.normal(0, 40, (max(int(h / scale), 2), max(int(w / scale), 2), 3))
            img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        elif kind == "blobs":
            for _ in range(rng.integers(5, 25)):
                col = tuple(float(v) for v in rng.uniform(0, 255, 3))
                c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
                if rng.random() < 0.5:
                    cv2.circle(img, c, int(rng.uniform(0.02, 0.2) * h), col, -1, cv2.LINE_AA)
                else:
                    s = rng.uniform(0.03, 0.25, 2) * h
                    cv2.rectangle(img, c, (int(c[0] + s[0]), int(c[1] + s[1])), col, -1)
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 3))
        else:  # lines: limb-like clutter
            for _ in range(rng.integers(6, 30)):
                col = tuple(float(v) for v in rng.uniform(0, 255, 3))
                a = rng.uniform(0, 1, 2) * (w, h)
                b = a + rng.normal(0, 0.25 * h, 2)
                _line(img, a, b, col, rng.uniform(0.01, 0.05) * h)
    return img


def _draw_occluder(rng: np.random.Generator, img: np.ndarray, ids: np.ndarray, kp: np.ndarray, height: float):
    """An ellipse or rectangle over part of a person (at most about a third of their height)."""
    centre = kp[rng.integers(K)] + rng.normal(0, 0.08 * height, 2)
    size = rng.uniform(0.1, 0.3, 2) * height
    col = tuple(float(v) for v in rng.uniform(0, 255, 3))
    if rng.random() < 0.5:
        axes = (max(int(size[0] * 8), 1), max(int(size[1] * 8), 1))
        ang = rng.uniform(0, 180)
        cv2.ellipse(img, _pt(centre), axes, ang, 0, 360, col, -1, cv2.LINE_AA, 4)
        cv2.ellipse(ids, _pt(centre), axes, ang, 0, 360, (255,), -1, cv2.LINE_8, 4)
    else:
        a, b = _pt(centre - size / 2), _pt(centre + size / 2)
        cv2.rectangle(img, a, b, col, -1, cv2.LINE_AA, 4)
        cv2.rectangle(ids, a, b, (255,), -1, cv2.LINE_8, 4)


def render_scene(rng: np.random.Generator, spec: SyntheticSpec, poses: list[PersonPose] | None = None):
    """One image (RGB uint8 [H, W, 3]) and its people: list of dicts with keypoints [17, 3], bbox, area."""
    h, w = spec.image_size
    img = draw_background(rng, h, w, spec.backgrounds)
    if poses is None:
        n = int(rng.integers(spec.people[0], spec.people[1] + 1))
        poses = []
        for _ in range(n):
            height = rng.uniform(*spec.height) * h
            margin = 0.0 if rng.random() < spec.outside_prob else 0.18 * height
            x = rng.uniform(margin, w - margin) if w > 2 * margin else w / 2
            y_top = 0.55 * height if margin else 0.2 * height
            y = rng.uniform(min(y_top, h - 0.45 * height), max(h - 0.45 * height, y_top)) if margin else \
                rng.uniform(0.2 * height, h)
            poses.append(random_pose(rng, np.array([x, y]), height, spec.pose_variation))
    # far to near: people whose feet are higher in the image are behind
    order = sorted(range(len(poses)), key=lambda i: poses[i].hip[1] + 0.5 * poses[i].height)
    ids = np.zeros((h, w), np.uint8)
    people = [None] * len(poses)
    for rank, i in enumerate(order):
        p = poses[i]
        kp, extra = skeleton_points(p)
        cols = _colour_with_face(p)
        hidden = draw_person(img, p, kp, extra, lambda name, cols=cols: tuple(float(v) for v in cols[name]))
        mask = np.zeros((h, w), np.uint8)
        draw_person(mask, p, kp, extra, lambda name: (255,))
        ids[mask > 127] = i + 1
        people[i] = {"kp": kp, "hidden": hidden, "mask": mask > 127, "pose": p}
        if rng.random() < spec.occluder_prob:
            _draw_occluder(rng, img, ids, kp, p.height)
    if rng.random() < spec.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2))
    img = img * rng.uniform(0.8, 1.15) + rng.normal(0, spec.noise_std, img.shape)
    image = np.clip(img, 0, 255).astype(np.uint8)
    out = []
    for i, person in enumerate(people):
        ys, xs = np.nonzero(person["mask"])
        if len(xs) == 0:
            continue
        kp = person["kp"]
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= h - 1)
        xi = np.clip(np.round(kp[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(kp[:, 1]).astype(int), 0, h - 1)
        own = ids[yi, xi] == i + 1
        v = np.where(inside, np.where(own & ~np.asarray(person["hidden"]), 2, 1), 0)
        keypoints = np.concatenate([np.where(inside[:, None], kp, 0.0), v[:, None]], 1)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        out.append({"keypoints": keypoints, "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "area": float(len(xs)), "pose": person["pose"]})
    return image, out


def coco_categories() -> list[dict]:
    sk = get_skeleton(COCO17)
    return [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(sk.names),
             "skeleton": (sk.limbs + 1).tolist()}]


def annotation_entries(people: list[dict], image_id: int, first_id: int) -> list[dict]:
    anns = []
    for j, person in enumerate(people):
        kp = person["keypoints"]
        anns.append({
            "id": first_id + j, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [round(v, 2) for v in person["bbox"]], "area": round(person["area"], 2),
            "num_keypoints": int((kp[:, 2] > 0).sum()),
            "keypoints": [round(float(v), 2) if i % 3 != 2 else int(v) for i, v in enumerate(kp.reshape(-1))],
        })
    return anns


def generate_dataset(out_dir: str | Path, spec: SyntheticSpec, progress: bool = False) -> Path:
    """Write ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``; returns the annotation path.

    An existing dataset written with the same spec is reused (its spec is stored alongside).
    """
    out_dir = Path(out_dir)
    ann_path = out_dir / "annotations.json"
    spec_path = out_dir / "synthetic_spec.json"
    spec_json = json.dumps(asdict(spec), sort_keys=True)
    if ann_path.is_file() and spec_path.is_file() and spec_path.read_text() == spec_json:
        return ann_path
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    it = range(spec.num_images)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="synthetic images", unit="img")
    for i in it:
        rng = np.random.default_rng([spec.seed, i])
        image, people = render_scene(rng, spec)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(out_dir / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, int(spec.jpeg_quality)])
        images.append({"id": i, "file_name": name, "height": spec.image_size[0], "width": spec.image_size[1]})
        annotations += annotation_entries(people, i, len(annotations) + 1)
    data = {"info": {"description": "RMPE-Live synthetic people", "spec": asdict(spec)},
            "images": images, "annotations": annotations, "categories": coco_categories()}
    from core.fileio import atomic_write_text

    atomic_write_text(ann_path, json.dumps(data))
    spec_path.write_text(spec_json)
    return ann_path


def _interpolate(a: PersonPose, b: PersonPose, t: float) -> PersonPose:
    """Pose between two key poses (smoothstep in t); colours and clothes from ``a``."""
    s = t * t * (3 - 2 * t)
    mix = lambda x, y: (1 - s) * np.asarray(x, dtype=np.float64) + s * np.asarray(y, dtype=np.float64)  # noqa: E731
    return PersonPose(hip=mix(a.hip, b.hip), height=float(mix(a.height, b.height)), lean=float(mix(a.lean, b.lean)),
                      shoulder=tuple(mix(a.shoulder, b.shoulder)), elbow=tuple(mix(a.elbow, b.elbow)),
                      hip_swing=tuple(mix(a.hip_swing, b.hip_swing)), knee=tuple(mix(a.knee, b.knee)),
                      yaw=float(mix(a.yaw, b.yaw)), tilt=float(mix(a.tilt, b.tilt)), width=a.width,
                      colours=a.colours, short_sleeves=a.short_sleeves, shorts=a.shorts)


def generate_video(path: str | Path, spec: SyntheticSpec, num_frames: int = 60, fps: float = 15.0,
                   key_every: int = 20) -> Path:
    """A video of ``spec.people[1]`` people moving smoothly between random key poses, plus its COCO
    annotations (image id = frame index) at ``path`` with suffix ``.json``. Returns the video path.

    The background is fixed per video; people walk across and change pose every ``key_every``
    frames. Written with PyAV (MPEG-4 part 2 in .mp4/.avi), readable by the pipeline's sources.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([spec.seed, 1_000_003])
    h, w = spec.image_size
    n = spec.people[1]
    background_seed = int(rng.integers(1 << 31))
    heights = rng.uniform(*spec.height, n) * h
    xs = (np.arange(n) + 0.5) / n * w
    keys = []
    for k in range(num_frames // key_every + 2):
        row = []
        for j in range(n):
            hip = np.array([xs[j] + rng.normal(0, 0.05 * w), h - 0.5 * heights[j] - rng.uniform(0, 0.05 * h)])
            pose = random_pose(rng, hip, heights[j], spec.pose_variation)
            if k:  # same person: keep clothes
                pose.colours, pose.short_sleeves, pose.shorts = keys[0][j].colours, keys[0][j].short_sleeves, \
                    keys[0][j].shorts
                pose.width = keys[0][j].width
            row.append(pose)
        keys.append(row)
    frame_spec = SyntheticSpec(**{**asdict(spec), "occluder_prob": 0.0, "blur_prob": 0.0})
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=int(round(fps)))
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"qscale": "2"}
    images, annotations = [], []
    try:
        for f in range(num_frames):
            k, t = divmod(f, key_every)
            poses = [_interpolate(keys[k][j], keys[k + 1][j], t / key_every) for j in range(n)]
            scene_rng = np.random.default_rng([background_seed])  # same background every frame
            frame, people = render_scene(scene_rng, frame_spec, poses)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            images.append({"id": f, "file_name": f"frame_{f:06d}", "height": h, "width": w})
            annotations += annotation_entries(people, f, len(annotations) + 1)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    data = {"images": images, "annotations": annotations, "categories": coco_categories()}
    path.with_suffix(".json").write_text(json.dumps(data))
    return path
