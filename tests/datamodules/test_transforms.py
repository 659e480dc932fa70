"""Top-down transform: the affine geometry, flips per skeleton, image/keypoint agreement, seeding, recipes."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from datamodules.records import PersonRecord
from datamodules.skeletons import COCO, LSP, MPII, Skeleton
from datamodules.transforms import (
    HOURGLASS_MPII,
    HRNET_COCO,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALISATIONS,
    Augmentation,
    TopDownTransform,
    affine_matrix,
    augmentation_preset,
    invert_affine,
    normalise_images,
    reduced_to_full,
    reduction_for,
    transform_points,
)

MEAN = np.asarray(IMAGENET_MEAN)[:, None, None]
STD = np.asarray(IMAGENET_STD)[:, None, None]


def _record(skeleton: Skeleton, rng: np.random.Generator, center=(320.0, 240.0), scale=(1.2, 1.6)) -> PersonRecord:
    keypoints = np.asarray(center) + rng.uniform(-100.0, 100.0, (skeleton.num_joints, 2))
    return PersonRecord(
        image="unused.jpg", image_id=1, center=np.asarray(center, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64), keypoints=keypoints,
        visible=np.ones(skeleton.num_joints, dtype=bool),
    )


def _to_uint8_rgb(image: torch.Tensor) -> np.ndarray:
    """The sample's ``(3, H, W)`` uint8 RGB crop as ``(H, W, 3)``."""
    assert image.dtype == torch.uint8
    return image.numpy().transpose(1, 2, 0)


def _rotation_and_zoom(matrix: np.ndarray) -> tuple[float, float, bool]:
    """Rotation (degrees, screen counter-clockwise), zoom and flip read back from a matrix."""
    # A flip negates the first row only; the second row is k * (-sin r, cos r) either way.
    zoom = math.hypot(matrix[1, 0], matrix[1, 1])
    rotation = math.degrees(math.atan2(-matrix[1, 0], matrix[1, 1]))
    flipped = np.linalg.det(matrix[:, :2]) < 0
    return rotation, zoom, bool(flipped)


# --- affine_matrix, invert_affine, transform_points ---------------------------------------------


def test_affine_centre_edges_and_width_by_hand():
    matrix = affine_matrix((100.0, 50.0), (0.5, 2.0), 0.0, (192, 256))
    # Box width 100 px -> 192 px; centre -> ((192 - 1) / 2, (256 - 1) / 2); edges -> -0.5 and 191.5.
    points = np.array([[100.0, 50.0], [50.0, 50.0], [150.0, 50.0], [100.0, 60.0]])
    expected = np.array([[95.5, 127.5], [-0.5, 127.5], [191.5, 127.5], [95.5, 127.5 + 19.2]])
    np.testing.assert_allclose(transform_points(points, matrix), expected, atol=1e-12)
    assert matrix.shape == (2, 3) and matrix.dtype == np.float64


def test_affine_rotation_is_counter_clockwise_on_screen():
    # 90 degrees: a point right of the centre ends up above the crop centre (y smaller).
    matrix = affine_matrix((0.0, 0.0), (1.0, 1.0), 90.0, (200, 200))
    np.testing.assert_allclose(transform_points(np.array([10.0, 0.0]), matrix), [99.5, 89.5], atol=1e-12)
    np.testing.assert_allclose(transform_points(np.array([0.0, 10.0]), matrix), [109.5, 99.5], atol=1e-12)


def test_affine_matches_opencv_rotation_matrix():
    rng = np.random.default_rng(0)
    for _ in range(20):
        # getRotationMatrix2D takes a float32 centre: use centres float32 holds exactly.
        center = np.round(rng.uniform(0, 500, 2) * 8) / 8
        scale = rng.uniform(0.3, 3.0, 2)
        rotation = rng.uniform(-180, 180)
        width, height = 192, 256
        zoom = width / (scale[0] * 200.0)
        expected = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), rotation, zoom)
        expected[:, 2] += [(width - 1) / 2 - center[0], (height - 1) / 2 - center[1]]
        np.testing.assert_allclose(affine_matrix(center, scale, rotation, (width, height)), expected, atol=1e-9)


def test_affine_shift_is_a_fraction_of_the_box():
    shifted = affine_matrix((100.0, 100.0), (1.0, 2.0), 0.0, (200, 400), shift=(0.1, -0.25))
    plain = affine_matrix((120.0, 0.0), (1.0, 2.0), 0.0, (200, 400))
    np.testing.assert_allclose(shifted, plain, atol=1e-12)


def test_affine_flip_mirrors_crop_x():
    plain = affine_matrix((310.0, 205.0), (1.1, 1.4), 25.0, (192, 256))
    flipped = affine_matrix((310.0, 205.0), (1.1, 1.4), 25.0, (192, 256), flip=True)
    points = np.random.default_rng(1).uniform(0, 600, (50, 2))
    a, b = transform_points(points, plain), transform_points(points, flipped)
    np.testing.assert_allclose(b[:, 0], 191.0 - a[:, 0], atol=1e-9)
    np.testing.assert_allclose(b[:, 1], a[:, 1], atol=1e-9)


@pytest.mark.parametrize("flip", [False, True])
def test_points_round_trip_through_the_inverse(flip):
    rng = np.random.default_rng(2)
    for _ in range(50):
        matrix = affine_matrix(
            rng.uniform(-100, 1000, 2), rng.uniform(0.05, 5.0, 2), rng.uniform(-180, 180), (192, 256),
            shift=tuple(rng.uniform(-0.3, 0.3, 2)), flip=flip,
        )
        points = rng.uniform(-200, 1200, (17, 2))
        back = transform_points(transform_points(points, matrix), invert_affine(matrix))
        np.testing.assert_allclose(back, points, atol=1e-8)
        np.testing.assert_allclose(invert_affine(invert_affine(matrix)), matrix, atol=1e-10)


def test_transform_points_keeps_leading_shape():
    matrix = affine_matrix((0.0, 0.0), (1.0, 1.0), 0.0, (200, 200))
    assert transform_points(np.zeros((4, 5, 2)), matrix).shape == (4, 5, 2)


def test_bad_scale_and_singular_matrix_raise():
    with pytest.raises(ValueError, match="box width"):
        affine_matrix((0.0, 0.0), (0.0, 1.0), 0.0, (192, 256))
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.zeros((2, 3)))


# --- flips through the transform, every skeleton ------------------------------------------------


@pytest.mark.parametrize("skeleton", [MPII, COCO, LSP], ids=lambda s: s.name)
def test_flip_puts_left_wrist_where_right_wrist_was(skeleton):
    rng = np.random.default_rng(3)
    record = _record(skeleton, rng)
    record.visible[skeleton.index("r_wrist")] = False
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    plain = TopDownTransform((256, 192), skeleton)(image, record, index=0)
    flipper = TopDownTransform((256, 192), skeleton, Augmentation(flip=True), seed=0)
    samples = [flipper(image, record, index=i) for i in range(12)]
    flipped = [s for s in samples if np.linalg.det(s["matrix"][:, :2]) < 0]
    unflipped = [s for s in samples if np.linalg.det(s["matrix"][:, :2]) > 0]
    assert flipped and unflipped
    left, right = skeleton.index("l_wrist"), skeleton.index("r_wrist")
    for sample in flipped:
        mirrored_right = np.array([191.0 - plain["keypoints"][right, 0], plain["keypoints"][right, 1]])
        np.testing.assert_allclose(sample["keypoints"][left], mirrored_right, atol=1e-4)
        # Visibility travels with the joint: the invisible right wrist is now the left one.
        assert sample["visible"][left] == 0.0 and sample["visible"][right] == 1.0
        # Flipping back (mirror x, swap joints again) gives the unflipped keypoints: flip twice = identity.
        back = sample["keypoints"][skeleton.flip_permutation].copy()
        back[:, 0] = 191.0 - back[:, 0]
        np.testing.assert_allclose(back, plain["keypoints"], atol=1e-4)
    for sample in unflipped:
        np.testing.assert_array_equal(sample["keypoints"], plain["keypoints"])


def test_flipped_crop_is_the_mirrored_crop():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    record = _record(COCO, rng, center=(200.3, 150.7), scale=(0.9, 1.2))
    plain = TopDownTransform((64, 48), COCO)(image, record, index=0)
    flipper = TopDownTransform((64, 48), COCO, Augmentation(flip=True), seed=0)
    samples = (flipper(image, record, index=i) for i in range(20))
    flipped = next(s for s in samples if np.linalg.det(s["matrix"][:, :2]) < 0)
    diff = (_to_uint8_rgb(flipped["image"]).astype(int) - _to_uint8_rgb(plain["image"])[:, ::-1].astype(int))
    # Same source points; only OpenCV's 1/32-pixel fixed-point rounding may differ by a grey level.
    assert np.abs(diff).max() <= 1


# --- one matrix for image and keypoints ---------------------------------------------------------


def test_crop_pixel_at_keypoint_equals_source_pixel():
    """Zoom 1 and rotations of +-90 degrees map integer pixels to integer pixels: no interpolation blur."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)
    # Crop centre (W - 1) / 2 = 95.5 and (H - 1) / 2 = 127.5: a half-integer box centre keeps the grid.
    center = np.array([250.5, 200.5])
    record = PersonRecord(
        image="unused.jpg", image_id=0, center=center, scale=np.array([192 / 200, 256 / 200]),
        keypoints=center + 0.5 + rng.integers(-90, 90, (COCO.num_joints, 2)),
        visible=np.ones(COCO.num_joints, dtype=bool),
    )
    # A huge sigma clipped at 90 makes every rotation +-90; flips on and off.
    augmentation = Augmentation(flip=True, rotation_sigma=1e6, rotation_max=90.0, rotation_prob=1.0)
    transform = TopDownTransform((256, 192), COCO, augmentation, seed=7)
    seen = set()
    for index in range(8):
        sample = transform(image, record, index=index)
        rotation, zoom, flipped = _rotation_and_zoom(sample["matrix"])
        seen.add((round(rotation), flipped))
        crop = _to_uint8_rgb(sample["image"])
        # The flip permutes joints, so compare joint i of the sample with joint perm[i] of the record.
        source = record.keypoints[COCO.flip_permutation] if flipped else record.keypoints
        crop_xy = np.rint(sample["keypoints"]).astype(int)
        np.testing.assert_allclose(sample["keypoints"], crop_xy, atol=1e-3)
        inside = (crop_xy[:, 0] >= 0) & (crop_xy[:, 0] < 192) & (crop_xy[:, 1] >= 0) & (crop_xy[:, 1] < 256)
        assert inside.sum() >= 10
        source_xy = source.astype(int)
        got = crop[crop_xy[inside, 1], crop_xy[inside, 0]]
        expected = image[source_xy[inside, 1], source_xy[inside, 0]][:, ::-1]  # BGR -> RGB
        np.testing.assert_array_equal(got, expected)
    assert len(seen) >= 3


def _model_input(sample: dict, normalisation: str = "imagenet") -> np.ndarray:
    """The sample's crop as the model receives it: ``(3, H, W)`` float32, normalised with its colour gains."""
    gain = torch.from_numpy(sample["colour_gain"])[None]
    return normalise_images(sample["image"][None], gain, normalisation)[0].numpy()


def test_normalisation_by_hand():
    image = np.empty((50, 60, 3), dtype=np.uint8)
    image[:] = (10, 20, 200)  # BGR
    record = _record(COCO, np.random.default_rng(6), center=(30.0, 25.0), scale=(0.1, 0.1))
    sample = TopDownTransform((16, 12), COCO)(image, record, index=0)
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 16, 12)
    assert sample["image"][:, 8, 6].tolist() == [200, 20, 10]  # RGB
    np.testing.assert_array_equal(sample["colour_gain"], np.ones(3, dtype=np.float32))
    normalised = _model_input(sample)
    assert normalised.dtype == np.float32 and normalised.shape == (3, 16, 12)
    expected = [(200 / 255 - 0.485) / 0.229, (20 / 255 - 0.456) / 0.224, (10 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(normalised[:, 8, 6], expected, rtol=1e-6)
    # The CPM Caffe data layer: x / 256 - 0.5.
    np.testing.assert_allclose(_model_input(sample, "centred")[:, 8, 6],
                               [200 / 256 - 0.5, 20 / 256 - 0.5, 10 / 256 - 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown normalisation 'caffe'; valid: imagenet, centred"):
        _model_input(sample, "caffe")


def _old_lookup_table(channel_gain: np.ndarray, normalisation: str) -> np.ndarray:
    """Earlier versions' normalisation, done in the worker: a float64 table per RGB channel rounded to float32."""
    divisor, mean, std = NORMALISATIONS[normalisation]
    values = np.minimum(channel_gain[:, None] * np.arange(256, dtype=np.float64)[None, :], 255.0)
    return ((values / divisor - np.asarray(mean)[:, None]) / np.asarray(std)[:, None]).astype(np.float32)


@pytest.mark.parametrize("normalisation", ["imagenet", "centred"])
def test_normalisation_on_the_batch_equals_the_old_lookup_table_to_float32_rounding(normalisation):
    rng = np.random.default_rng(21)
    images = torch.from_numpy(rng.integers(0, 256, (4, 3, 16, 256), dtype=np.uint8))
    images[:, :, 0, :] = torch.arange(256, dtype=torch.uint8)  # every value in every channel
    gains = np.concatenate([np.ones((1, 3)), rng.uniform(0.6, 1.4, (3, 3))]).astype(np.float32)
    normalised = normalise_images(images, torch.from_numpy(gains), normalisation).numpy()
    for b in range(4):
        table = _old_lookup_table(gains[b].astype(np.float64), normalisation)
        expected = np.stack([table[c][images[b, c].numpy()] for c in range(3)])
        # |values| < 2.7: float32 spacing there is 2.4e-7; the two orders of rounding differ by a few of it.
        np.testing.assert_allclose(normalised[b], expected, rtol=0, atol=1e-6)
    # Without colour gains: within two float32 spacings (one multiply and one add in float32, rounded once each).
    table = _old_lookup_table(np.ones(3), normalisation)
    expected = np.stack([table[c][images[0, c].numpy()] for c in range(3)])
    assert np.abs(normalised[0] - expected).max() <= 2 * np.spacing(np.float32(2.7))


def test_evaluation_transform_has_no_randomness():
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    record = _record(MPII, rng, center=(160.0, 120.0), scale=(1.0, 1.0))
    transform = TopDownTransform((256, 256), MPII)
    a, b = transform(image, record, index=0, epoch=0), transform(image, record, index=5, epoch=9)
    np.testing.assert_array_equal(a["matrix"], affine_matrix(record.center, record.scale, 0.0, (256, 256)))
    np.testing.assert_array_equal(a["matrix"], b["matrix"])
    assert torch.equal(a["image"], b["image"])
    np.testing.assert_allclose(a["inverse_matrix"], invert_affine(a["matrix"]), atol=0)
    np.testing.assert_allclose(a["keypoints"], transform_points(record.keypoints, a["matrix"]), atol=1e-4)
    assert a["keypoints"].dtype == np.float32 and a["visible"].dtype == np.float32


# --- seeding ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    return image, _record(COCO, rng, center=(160.0, 120.0), scale=(0.8, 1.0))


def _augmented(seed: int = 0) -> TopDownTransform:
    augmentation = dataclasses.replace(HRNET_COCO, photometric=True, colour_scale=0.2)
    return TopDownTransform((64, 48), COCO, augmentation, seed=seed)


def _same(a: dict, b: dict) -> bool:
    return (torch.equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])
            and np.array_equal(a["matrix"], b["matrix"]))


def test_same_seed_epoch_index_gives_identical_samples(scene):
    image, record = scene
    for index in range(6):
        assert _same(_augmented()(image, record, index, epoch=2), _augmented()(image, record, index, epoch=2))


def test_other_epoch_or_seed_gives_other_augmentation(scene):
    image, record = scene
    transform = _augmented()
    base = [transform(image, record, i, epoch=0)["matrix"] for i in range(6)]
    later = [transform(image, record, i, epoch=1)["matrix"] for i in range(6)]
    reseeded = [_augmented(seed=1)(image, record, i, epoch=0)["matrix"] for i in range(6)]
    assert all(not np.array_equal(a, b) for a, b in zip(base, later, strict=True))
    assert all(not np.array_equal(a, b) for a, b in zip(base, reseeded, strict=True))


def test_results_do_not_depend_on_call_order(scene):
    image, record = scene
    first, second = _augmented(), _augmented()
    five_then_three = (first(image, record, 5, epoch=1), first(image, record, 3, epoch=1))
    three_then_five = (second(image, record, 3, epoch=1), second(image, record, 5, epoch=1))
    assert _same(five_then_three[0], three_then_five[1]) and _same(five_then_three[1], three_then_five[0])


def test_photometric_changes_pixels_not_geometry(scene):
    image, record = scene
    geometric = TopDownTransform((64, 48), COCO, HRNET_COCO, seed=3)
    photometric = TopDownTransform((64, 48), COCO, dataclasses.replace(HRNET_COCO, photometric=True), seed=3)
    changed = 0
    for index in range(20):
        a, b = geometric(image, record, index), photometric(image, record, index)
        np.testing.assert_array_equal(a["matrix"], b["matrix"])
        np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
        changed += not torch.equal(a["image"], b["image"])
    assert changed >= 5


# --- recipe parameter ranges --------------------------------------------------------------------


def _draws(augmentation: Augmentation, count: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation, scale factor and flip of ``count`` samples, read back from their matrices."""
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    record = _record(MPII, np.random.default_rng(10), center=(4.0, 4.0), scale=(1.0, 1.0))
    transform = TopDownTransform((16, 16), MPII, augmentation, seed=11)
    base_zoom = 16 / 200.0
    out = np.array([_rotation_and_zoom(transform(image, record, index=i)["matrix"]) for i in range(count)])
    return out[:, 0], base_zoom / out[:, 1], out[:, 2].astype(bool)


def test_hrnet_linear_scale_and_rotation_ranges():
    augmentation = Augmentation(
        flip=True, rotation_sigma=45.0, rotation_max=90.0, rotation_prob=0.6, scale_sigma=0.35, scale_max=0.35,
    )
    rotation, factor, flipped = _draws(augmentation)
    assert np.all(np.abs(rotation) <= 90.0 + 1e-9)
    rotated = rotation != 0.0
    assert abs(rotated.mean() - 0.6) < 0.04
    assert abs(rotation[rotated].std() - 45.0 * 0.88) < 4.0  # N(0, 45) clipped at 2 sigma: std 0.88 sigma
    assert np.isclose(np.abs(rotation).max(), 90.0)
    assert np.all((factor >= 0.65 - 1e-9) & (factor <= 1.35 + 1e-9))
    assert np.isclose(factor.min(), 0.65) and np.isclose(factor.max(), 1.35)
    # clip(1 + N(0, 0.35), 0.65, 1.35): 31.7 % of draws sit on a bound.
    assert abs(np.isclose(np.abs(factor - 1.0), 0.35).mean() - 0.317) < 0.04
    assert abs(flipped.mean() - 0.5) < 0.04


def test_hourglass_log2_scale_and_rotation_ranges():
    rotation, factor, _ = _draws(HOURGLASS_MPII)
    assert np.all(np.abs(rotation) <= 60.0 + 1e-9)
    assert abs((rotation != 0.0).mean() - 0.4) < 0.04
    exponent = np.log2(factor)
    assert np.all(np.abs(exponent) <= 0.5 + 1e-9)
    assert np.isclose(np.abs(exponent).max(), 0.5)
    assert abs(exponent.std() - 0.25 * 0.98) < 0.02  # N(0, 0.25) clipped at 2 sigma: std 0.98 sigma


def test_truncated_rotation_never_piles_up_at_the_bounds():
    # mmpose 1.x: rotate_factor 80 x truncnorm(-1, 1): std 80 x 0.538 = 43.1 degrees, no mass at +-80; the
    # clipped N(0, 80) it replaced puts 31.7 % of the rotated samples exactly on +-80.
    truncated = Augmentation(rotation_sigma=80.0, rotation_max=80.0, rotation_prob=1.0, rotation_dist="truncated")
    clipped = Augmentation(rotation_sigma=80.0, rotation_max=80.0, rotation_prob=1.0)
    rotation, _, _ = _draws(truncated, 4000)
    assert np.all(np.abs(rotation) < 80.0) and np.abs(rotation).max() > 75.0
    assert abs(rotation.std() - 80.0 * 0.5379) < 1.5
    on_bound, _, _ = _draws(clipped, 4000)
    assert abs(np.isclose(np.abs(on_bound), 80.0).mean() - 0.317) < 0.03


def test_uniform_rotation_and_scale_cover_their_range_evenly():
    # CPM's data layer: rotation U(-40, 40), scale factor U(0.7, 1.3).
    augmentation = Augmentation(rotation_max=40.0, rotation_prob=1.0, rotation_dist="uniform", scale_max=0.3,
                                scale_dist="uniform")
    rotation, factor, _ = _draws(augmentation, 4000)
    assert np.all(np.abs(rotation) <= 40.0) and abs(rotation.std() - 40.0 / np.sqrt(3)) < 0.6
    assert np.all((factor >= 0.7 - 1e-9) & (factor <= 1.3 + 1e-9)) and abs(factor.std() - 0.6 / np.sqrt(12)) < 0.005
    assert abs((np.abs(rotation) < 20.0).mean() - 0.5) < 0.03  # flat: half the mass within half the range


def test_distributions_are_validated_and_other_draws_keep_their_values():
    with pytest.raises(ValueError, match="rotation_dist must be one of"):
        Augmentation(rotation_dist="gaussian")
    # The distribution's own uniform draws come after all others: a recipe switching to a truncated rotation
    # keeps the same flips and scale factors for every sample.
    plain = _draws(Augmentation(flip=True, rotation_sigma=30.0, rotation_max=60.0, rotation_prob=1.0,
                                scale_sigma=0.25, scale_max=0.25), 200)
    switched = _draws(Augmentation(flip=True, rotation_sigma=30.0, rotation_max=60.0, rotation_prob=1.0,
                                   scale_sigma=0.25, scale_max=0.25, rotation_dist="truncated"), 200)
    np.testing.assert_allclose(plain[1], switched[1], rtol=1e-12)
    assert np.array_equal(plain[2], switched[2]) and not np.allclose(plain[0], switched[0])


def test_colour_scale_range_and_clamp():
    image = np.empty((20, 20, 3), dtype=np.uint8)
    image[:] = (200, 100, 50)  # BGR
    record = _record(MPII, np.random.default_rng(12), center=(10.0, 10.0), scale=(0.1, 0.1))
    transform = TopDownTransform((8, 8), MPII, Augmentation(colour_scale=0.4), seed=0)
    gains = []
    for index in range(300):
        pixel = (_model_input(transform(image, record, index))[:, 4, 4] * STD[:, 0, 0] + MEAN[:, 0, 0]) * 255.0
        gains.append(pixel / np.array([50.0, 100.0, 200.0]))
    gains = np.array(gains)
    assert np.all(gains[:, :2] >= 0.6 - 1e-4) and np.all(gains[:, :2] <= 1.4 + 1e-4)
    assert gains[:, :2].min() < 0.65 and gains[:, :2].max() > 1.35
    # Blue 200 x U(0.6, 1.4) is clamped at 255.
    assert np.all(gains[:, 2] * 200.0 <= 255.0 + 1e-3) and np.isclose(gains[:, 2].max() * 200.0, 255.0, atol=1e-3)


# --- half-body ----------------------------------------------------------------------------------


def _half_body_record() -> PersonRecord:
    keypoints = np.zeros((COCO.num_joints, 2))
    keypoints[:11] = np.linspace([100.0, 50.0], [160.0, 90.0], 11)  # upper body: box 60 x 40
    keypoints[11:] = np.linspace([110.0, 150.0], [130.0, 250.0], 6)  # lower body: box 20 x 100
    return PersonRecord(
        image="unused.jpg", image_id=0, center=np.array([130.0, 150.0]), scale=np.array([1.0, 4.0 / 3.0]),
        keypoints=keypoints, visible=np.ones(COCO.num_joints, dtype=bool),
    )


def test_half_body_crops_to_the_chosen_half():
    record = _half_body_record()
    image = np.zeros((300, 300, 3), dtype=np.uint8)
    transform = TopDownTransform((256, 192), COCO, Augmentation(half_body_prob=1.0, half_body_min_joints=8), seed=0)
    # Upper: 60 x 40 -> widened to aspect 0.75: 60 x 80, x 1.5 -> scale (0.45, 0.6) around the joints' mean.
    upper = affine_matrix(record.keypoints[:11].mean(axis=0), (0.45, 0.6), 0.0, (192, 256))
    # Lower: 20 x 100 -> 75 x 100, x 1.5 -> scale (0.5625, 0.75).
    lower = affine_matrix(record.keypoints[11:].mean(axis=0), (0.5625, 0.75), 0.0, (192, 256))
    chosen = []
    for index in range(300):
        sample = transform(image, record, index)
        is_upper = np.allclose(sample["matrix"], upper, atol=1e-9)
        assert is_upper or np.allclose(sample["matrix"], lower, atol=1e-9)
        half = slice(0, 11) if is_upper else slice(11, 17)
        kept = sample["keypoints"][half]
        assert np.all((kept >= 0) & (kept <= [191, 255]))
        chosen.append(is_upper)
    # HRNet picks the upper body when randn() < 0.5: probability 0.69 (not 0.5).
    assert abs(np.mean(chosen) - 0.691) < 0.08


def test_half_body_needs_enough_joints():
    record = _half_body_record()
    record.visible[:] = False
    record.visible[:8] = True  # 8 annotated: HRNet needs MORE than NUM_JOINTS_HALF_BODY = 8
    image = np.zeros((300, 300, 3), dtype=np.uint8)
    transform = TopDownTransform((256, 192), COCO, Augmentation(half_body_prob=1.0, half_body_min_joints=8), seed=0)
    plain = affine_matrix(record.center, record.scale, 0.0, (192, 256))
    for index in range(10):
        np.testing.assert_array_equal(transform(image, record, index)["matrix"], plain)
    # 9 annotated, only 1 in the lower body: the upper body is taken every time.
    record.visible[:] = False
    record.visible[:8] = True
    record.visible[15] = True
    box = record.keypoints[:8].max(axis=0) - record.keypoints[:8].min(axis=0)
    width = max(box[0], box[1] * 0.75)
    upper = affine_matrix(record.keypoints[:8].mean(axis=0), (width * 1.5 / 200, width / 0.75 * 1.5 / 200), 0.0,
                          (192, 256))
    for index in range(10):
        np.testing.assert_allclose(transform(image, record, index)["matrix"], upper, atol=1e-9)


# --- configuration ------------------------------------------------------------------------------


def test_presets_and_validation():
    assert augmentation_preset("hrnet_coco") is HRNET_COCO
    assert augmentation_preset("none") == Augmentation()
    with pytest.raises(KeyError, match="hourglass_mpii"):
        augmentation_preset("hrnet")
    with pytest.raises(ValueError, match="scale_mode"):
        Augmentation(scale_mode="log10")
    with pytest.raises(ValueError, match="rotation_prob"):
        Augmentation(rotation_prob=1.5)
    with pytest.raises(ValueError, match="scale_max"):
        Augmentation(scale_max=1.0)


# --- reduced decoding: the reduction and the composed matrix ------------------------------------


@pytest.mark.parametrize(("step", "expected"), [(1.0, 1), (1.99, 1), (2.0, 2), (3.9, 2), (4.0, 4), (7.99, 4),
                                                (8.0, 8), (30.0, 8)])
@pytest.mark.parametrize("rotation", [0.0, 37.0])
@pytest.mark.parametrize("flip", [False, True])
def test_reduction_is_the_largest_power_of_two_up_to_the_crop_step(step, expected, rotation, flip):
    # A crop of width 64 over a box 64 * step px wide samples the image every `step` px along both crop axes.
    matrix = affine_matrix((500.0, 400.0), (64 * step / 200, 64 * step / 200), rotation, (64, 64), flip=flip)
    assert reduction_for(matrix) == expected


def test_reduction_follows_the_sparser_axis_of_an_anisotropic_warp():
    # udp zooms by (W - 1) / w and (H - 1) / h: x every 4.1 px, y every 3.9 px -> 2, not 4.
    matrix = np.array([[1 / 4.1, 0.0, 0.0], [0.0, 1 / 3.9, 0.0]])
    assert reduction_for(matrix) == 2


@pytest.mark.parametrize("reduction", [2, 4, 8])
def test_reduced_matrix_maps_reduced_pixel_centres_as_their_full_resolution_block_centres(reduction):
    matrix = affine_matrix((310.3, 207.9), (2.1, 2.8), 23.0, (48, 64), flip=True)
    composed = reduced_to_full(matrix, reduction)
    reduced_points = np.array([[0.0, 0.0], [3.0, 5.0], [17.25, 2.5]])
    # Reduced pixel j averages full pixels r j ... r j + r - 1: its centre is r j + (r - 1) / 2.
    full_points = reduced_points * reduction + (reduction - 1) / 2
    np.testing.assert_allclose(transform_points(reduced_points, composed), transform_points(full_points, matrix),
                               rtol=0, atol=1e-9)
    np.testing.assert_array_equal(reduced_to_full(matrix, 1), matrix)
