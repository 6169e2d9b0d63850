"""P2 §4.3: a ½⟨111⟩ dislocation loop in bcc W, and the W edge cell of its union training set.

Which loop. P2 §4.3 (Figs. 12–14) places "an entire dislocation loop" of diameter L_D in a
periodic simulation domain of N = 150 r0 and fits the model on "a dipole screw and a dipole edge
dislocation" (training domains of size L = L_D). A loop whose training data are screw *and* edge
dislocations is a glide (shear) loop: its Burgers vector lies in its plane, so it is screw where
the line is parallel to b and edge where it is perpendicular (a prismatic loop, b normal to its
plane, is pure edge everywhere and would need no screw data). P2 gives no indices; taken here:
b = ½[111] on the (1-10) plane, the glide system of the W screw (:mod:`kernels.screw_quadrupole`,
glide plane {110}) and of matscipy's ``BCCEdge111Dislocation`` (b = ½[111], glide plane (1-10),
line [11-2]). The loop is a circle of diameter L_D a0 centred in the cell.

Frame (:data:`AXES`): x = [111] ∥ b, y = [1-10] (the glide-plane normal), z = [11-2] (the line of
the edge segments). The orthogonal unit cell a√3/2 × a√2 × a√6 (spanned by the lattice vectors
½[111], [1-10], [11-2]) holds 6 atoms; a cell of ``nx × ny × nz`` of them is near-cubic for
(nx, ny, nz) ≈ (2/√3, 1/√2, 1/√6)·N. The loop's plane lies midway between two (1-10) atomic
planes (spacing a/√2), so no atom sits on the slipped disc.

Predictor (the elastic field of the loop). The displacement of a dislocation loop C bounding a
surface S, in an isotropic medium, is Burgers' formula (Hirth & Lothe, *Theory of
Dislocations*, 2nd ed., eq. 4-21)

    u(x) = −b Ω(x)/(4π) − (1/4π) ∮_C b × dl'/R + 1/(8π(1−ν)) ∇ ∮_C ((b × R)·dl')/R ,

Ω(x) the solid angle that S subtends at x. Only the first, *solid-angle term* is used here: it
carries the topology (u jumps by exactly b across the slipped disc, is continuous everywhere
else), the other two are smooth away from the line and of the same order as the solid-angle
term's own smooth part; the relaxation with the reference removes them (W is elastically
almost isotropic, Zener ratio 1.01). Ω of the disc is the sum over the triangles (centre,
v_k, v_{k+1}) of a regular polygon of :data:`LOOP_SEGMENTS` vertices on the circle, each by Van
Oosterom & Strackee's formula (IEEE Trans. Biomed. Eng. BME-30, 125 (1983))

    tan(Ω_T/2) = R₁·(R₂×R₃) / (R₁R₂R₃ + (R₁·R₂)R₃ + (R₁·R₃)R₂ + (R₂·R₃)R₁),

evaluated with atan2, so Ω ∈ (−2π, 2π) jumps by 4π across the disc only.

Periodic images. The cell is periodic at fixed cell vectors; far away a loop is a dipole layer,
and the lattice sum of dipoles converges only conditionally. :func:`periodic_solid_angle` sums
the layers j of loops in the planes y = c_y + j L_y (|j| ≤ ``layers``), each as its (2M+1)²
in-plane images *minus f times the rectangle they tile* (f = loop area / L_x L_z): the
remainder decays fast away from the layer and with M, and the in-plane tail beyond the rectangle
is the rectangle's complement slipped by f. What the rectangles removed — uniformly f-slipped
planes, ±2πf either side of each — is added back summed over the stack at zero mean strain (the
cell is fixed): the sawtooth 2πf (sign y' − 2y'/L_y), y' = y − c_y ∈ (−L_y/2, L_y/2]; its linear
part is the homogeneous strain that cancels the loop's plastic strain. Points are wrapped into
the cell centred on the loop, so the field is periodic by construction, and its continuity
across the cell faces measures the truncation: at the defaults (M = 2, 2 layers) the jump
across the faces normal to the loop is 5.6e-4 |b| in a 12 a0 cell with L_D = 6 a0, against
0.11 |b| for the single loop (the faces in the loop's plane match by symmetry; tested).

Size. :func:`slipped_diameter_A` measures a loop in any configuration of its cell: the
diameter of the disc whose area is that of the loop's plane where the relative displacement of
the atomic planes either side exceeds |b|/2.

Which loop is used. The glide loop is the reading of P2's text, but it does not survive the
reference relaxation: with no applied stress its edge segments (Peierls stress of a few tens of
MPa in W) glide inwards under the line tension and the fixed cell's back stress, the screw
segments shorten, and the loop annihilates. Measured with the Zhou EAM (ase L-BFGS to
1e-5 eV/Å): L_D = 6 a0 in a 12 a0 cell (3360 atoms) and L_D = 10 a0 in a 16 a0 cell (8316
atoms) both relaxed to the perfect crystal (E − n e_bulk = 5e-9 eV). At 0 K a loop holds its size
only if it cannot glide away: the prismatic loop (``kind = "prismatic"``), b = ½[111] normal to
its (111) plane, pure edge all round, can change its area only by climb. It is built by removing
the sites of a disc of three (111) planes (a slab |b| thick) and closing it with the same
solid-angle field; after the reference relaxation it is still a vacancy loop (L_D = 6 a0 in
12 a0: E − n e_bulk = 141.8 eV for 48 vacancies, against ≈ 3.6 eV each if they were apart).
Both are offered; the presets use the prismatic one (docs/p2-w-loop.md).

The edge training cell. :data:`W_EDGE` is the straight limit of the prismatic loop, a dipole of
½[111](1-10) edges (line [11-2]) in a cell one unit cell (a√6) thick along the line: a strip of
the (111) slab is removed and the strip's periodic solid-angle field closes it
(:func:`w_edge_cell`). Its two edges lie on different glide planes, so they cannot annihilate
without climb; a dipole on one glide plane (:mod:`kernels.edge_quadrupole`'s arrangement, and
matscipy's ``CubicCrystalDislocationQuadrupole`` of ``BCCEdge111Dislocation`` at glide
separations 4, 6, 8: 96–384 atoms) glides to annihilation under the Zhou EAM.

Union fit. :func:`fit_union` minimises P2 eq. (4.16) summed over the components of a union
training set (the screw cell :data:`kernels.dislocations.W_SCREW` and the edge cell): each
component's energy and force rows with its own W_E and W_F, stacked by
:func:`kernels.point_defects.union_system` (P1's union mechanism), plus *one* copy of the elastic
rows of the perfect crystal (W_V1, W_V2; the same blocks as :func:`kernels.dislocations.fit`).

Units: Å, eV, eV/Å; sizes (N, L, L_D) in cubic lattice constants a0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
import numpy as np

from . import dislocations as dk
from .ace import ACEBasis, ACEModel
from .ard import solve_ard
from .errors import energy_error, formation_energy_error, geometry_error, rmse
from .least_squares import (DEFAULT_ENERGY_WEIGHTING, DEFAULT_WEIGHT_FORM, energy_row_scale,
                            row_weight, solve_rrqr, weighted_system)
from .point_defects import (TrainingComponent, reference_preconditioner, relax_reference,
                            relax_fitted, union_system)

__all__ = ["AXES", "BURGERS", "LOOP_SEGMENTS", "LOOP_IMAGES", "LOOP_LAYERS", "LOOP_KINDS",
           "LoopCell", "bcc_loop_unit_cell", "loop_cell_repeats", "max_loop_diameter_a0",
           "solid_angle", "periodic_solid_angle", "loop_displacement",
           "single_loop_displacement", "loop_cell", "slip_profile", "slipped_diameter_A",
           "plane_offset_A", "W_EDGE", "w_edge_cell", "edge_cell_repeats", "LoopComponent",
           "UnionFitResult", "fit_union", "union_elastic_blocks", "union_system_rows",
           "LoopSimulation", "simulation_reference", "predict"]

SYMBOL = dk.SYMBOL
#: Cell axes in cubic-crystal coordinates: x ∥ b, y = glide-plane normal, z = edge line.
AXES = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]])
#: Burgers vector in units of a0 (cubic-crystal coordinates).
BURGERS = np.array([1.0, 1.0, 1.0]) / 2.0
#: Vertices of the polygon standing for the circular loop in the solid angle (its area differs
#: from the circle's by 2π²/(3n²) ≈ 1e-4 of it).
LOOP_SEGMENTS = 128
#: Default in-plane image shells M of the periodic sum ((2M+1)² loops per layer).
LOOP_IMAGES = 2
#: Layers of loops |j| ≤ J along the plane normal (each layer's remainder decays like
#: exp(−2π|y|/L) away from it).
LOOP_LAYERS = 2
#: Loop kinds of :func:`loop_cell`: the ½[111](1-10) glide loop, the ½[111](111) prismatic
#: vacancy loop.
LOOP_KINDS = ("glide", "prismatic")


@dataclass(frozen=True)
class LoopCell:
    """A periodic cell holding one glide loop.

    Attributes
    ----------
    positions0_A : (n, 3) ndarray
        Perfect-crystal sites x₀, Å.
    positions_A : (n, 3) ndarray
        x₀ plus the loop's periodic solid-angle field, Å.
    cell_A : (3, 3) ndarray
        Orthogonal cell rows, Å.
    centre_A : (3,) ndarray
        Loop centre, Å (its y: the glide plane, midway between atomic planes).
    radius_A : float
        Loop radius, Å (half the diameter L_D).
    burgers_A : (3,) ndarray
        b in the cell frame, Å (along x).
    repeats : tuple of int
        (nx, ny, nz) unit cells.
    symbols : tuple of str
        Chemical symbol of each atom.
    """

    positions0_A: np.ndarray
    positions_A: np.ndarray
    cell_A: np.ndarray
    centre_A: np.ndarray
    radius_A: float
    burgers_A: np.ndarray
    repeats: tuple
    symbols: tuple = ()
    kind: str = "glide"

    @property
    def normal_axis(self) -> int:
        """The loop plane's normal: 1 (y, glide) or 0 (x, prismatic)."""
        return 1 if self.kind == "glide" else 0


def bcc_loop_unit_cell(a_A: float) -> tuple[np.ndarray, np.ndarray]:
    """The 6-atom orthogonal bcc unit cell in the loop frame: positions (6, 3) and diagonal cell
    (3, 3), Å (a√3/2 × a√2 × a√6)."""
    from ase.build import bulk, cut  # noqa: PLC0415

    c = cut(bulk(SYMBOL, "bcc", a_A, cubic=True), a=tuple(BURGERS), b=(1.0, -1.0, 0.0),
            c=(1.0, 1.0, -2.0))
    R = AXES / np.linalg.norm(AXES, axis=1)[:, None]
    cell = np.diag(np.diag(np.asarray(c.cell, float) @ R.T))
    x = np.mod(c.positions @ R.T + 1e-9, np.diag(cell)) - 1e-9
    x[np.abs(x) < 1e-8] = 0.0
    return x[np.lexsort((x[:, 0], x[:, 2], x[:, 1]))], cell


def loop_cell_repeats(size_a: float) -> tuple[int, int, int]:
    """Unit-cell repeats (nx, ny, nz) of a near-cubic cell of side ≈ ``size_a`` a0."""
    return (max(2, int(round(size_a * 2 / np.sqrt(3.0)))),
            max(2, int(round(size_a / np.sqrt(2.0)))),
            max(1, int(round(size_a / np.sqrt(6.0)))))


def max_loop_diameter_a0(size_a: float, kind: str = "glide") -> float:
    """The largest loop diameter (a0) that :func:`loop_cell` accepts in a cell of side
    ≈ ``size_a`` a0: the shorter in-plane period minus one a0."""
    nx, ny, nz = loop_cell_repeats(size_a)
    periods = np.array([nx * np.sqrt(3.0) / 2, ny * np.sqrt(2.0), nz * np.sqrt(6.0)])
    return float(min(periods[[0, 2]] if kind == "glide" else periods[[1, 2]]) - 1.0)


def _polygon(centre: np.ndarray, radius: float, n_segments: int) -> np.ndarray:
    """Vertices (n, 3) of a regular polygon inscribed in the circle of ``radius`` about
    ``centre`` in the plane y = centre_y."""
    t = 2 * np.pi * np.arange(n_segments) / n_segments
    return centre + radius * np.column_stack([np.sin(t), np.zeros_like(t), np.cos(t)])


def solid_angle(points: np.ndarray, centre: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed solid angle (sr) that the planar polygon ``vertices`` (fan around ``centre``)
    subtends at ``points`` (m, 3): Van Oosterom–Strackee per triangle, summed. Positive on the
    side the polygon's normal (right-hand rule of the vertex order) points away from."""
    p = np.asarray(points, float)
    r1 = centre[None, :] - p                       # (m, 3)
    n1 = np.linalg.norm(r1, axis=1)
    out = np.zeros(len(p))
    v = np.asarray(vertices, float)
    for k in range(len(v)):
        r2 = v[k][None, :] - p
        r3 = v[(k + 1) % len(v)][None, :] - p
        n2, n3 = np.linalg.norm(r2, axis=1), np.linalg.norm(r3, axis=1)
        num = np.einsum("ij,ij->i", r1, np.cross(r2, r3))
        den = (n1 * n2 * n3 + np.einsum("ij,ij->i", r1, r2) * n3
               + np.einsum("ij,ij->i", r1, r3) * n2 + np.einsum("ij,ij->i", r2, r3) * n1)
        out += 2.0 * np.arctan2(num, den)
    return out


def _rectangle(centre: np.ndarray, half_x: float, half_z: float) -> np.ndarray:
    """Corners of the rectangle |x − c_x| ≤ half_x, |z − c_z| ≤ half_z in the plane y = c_y, in
    the vertex order of :func:`_polygon` (same normal)."""
    return centre + np.array([[half_x, 0.0, half_z], [half_x, 0.0, -half_z],
                              [-half_x, 0.0, -half_z], [-half_x, 0.0, half_z]])


def periodic_solid_angle(points_A: np.ndarray, centre_A: np.ndarray, radius_A: float,
                         lengths_A: np.ndarray, images: int = LOOP_IMAGES,
                         layers: int = LOOP_LAYERS, n_segments: int = LOOP_SEGMENTS,
                         normal_axis: int = 1, half_widths_A: tuple | None = None,
                         chunk: int = 20000) -> np.ndarray:
    """Ω_per (sr): the solid angle of the periodic array of circular loops in the planes
    y = c_y + j L_y, regularised for a fixed cell (module docstring), at ``points_A`` (m, 3).

    Each layer j of loops (in-plane images |n_x|, |n_z| ≤ ``images``) is summed as the loops
    minus f times the rectangle they tile (f = loop area / (L_x L_z)): far from the layer the
    loops and the uniformly slipped rectangle look alike, so the difference decays fast in the
    distance from the layer and in M, and the tail of the in-plane sum beyond the rectangle is
    the rectangle's complement in the plane, slipped by f. Layers |j| ≤ ``layers`` are summed.
    What the rectangles left out is the solid angle of uniformly f-slipped planes, ±2πf on
    either side of each; summed over the stack at zero mean strain (the cell is fixed) it is the
    sawtooth 2πf (sign y' − 2y'/L_y), y' = y − c_y in (−L_y/2, L_y/2]. Points are first
    wrapped into the cell centred on the loop, so Ω_per is periodic by construction; how
    continuous it is across the cell's faces measures the truncation (tested).

    Orientation: Ω_per is signed so that it jumps by +4π from just below to just above the
    disc (along +normal). ``normal_axis`` (0, 1, 2: x, y, z) is the loop's normal; the text
    above names it y. ``half_widths_A``: the loop is instead the rectangle of these in-plane
    half-widths (Å; along the in-plane axes in increasing order, e.g. (y, z) for the normal x);
    a rectangle as wide as the cell along an axis tiles a strip with its images (a straight
    dislocation dipole, :func:`w_edge_cell`).
    """
    # work in a frame whose second axis is the loop's normal; the sign is fixed below
    perm = [1, 0, 2] if normal_axis == 0 else [0, 1, 2] if normal_axis == 1 else [0, 2, 1]
    centre = np.asarray(centre_A, float)[perm]
    L = np.asarray(lengths_A, float)[perm]
    x = np.asarray(points_A, float)[:, perm] - centre
    x = centre + x - np.round(x / L) * L
    if half_widths_A is None:
        verts = _polygon(centre, float(radius_A), n_segments)
        area = 0.5 * n_segments * radius_A**2 * np.sin(2 * np.pi / n_segments)
    else:
        verts = _rectangle(centre, *half_widths_A)
        area = 4 * half_widths_A[0] * half_widths_A[1]
    rect = _rectangle(centre, (images + 0.5) * L[0], (images + 0.5) * L[2])
    f = area / (L[0] * L[2])
    # sign of a uniformly slipped plane's solid angle just above it
    sigma = np.sign(solid_angle(centre[None] + [0.0, 1e-3 * L.min(), 0.0], centre, verts)[0])
    in_plane = [np.array([i * L[0], 0.0, k * L[2]]) for i in range(-images, images + 1)
                for k in range(-images, images + 1)]
    out = np.zeros(len(x))
    for s in range(0, len(x), chunk):
        p = x[s:s + chunk]
        acc = np.zeros(len(p))
        for j in range(-layers, layers + 1):
            dy = np.array([0.0, j * L[1], 0.0])
            for d in in_plane:
                acc += solid_angle(p, centre + dy + d, verts + dy + d)
            acc -= f * solid_angle(p, centre + dy, rect + dy)
        out[s:s + chunk] = acc
    y = x[:, 1] - centre[1]
    # σ normalises the orientation: Ω_per(above) − Ω_per(below) = +4π across the disc
    return sigma * out + 2 * np.pi * f * (np.sign(y) - 2 * y / L[1])


def loop_displacement(points_A: np.ndarray, centre_A: np.ndarray, radius_A: float,
                      burgers_A: np.ndarray, lengths_A: np.ndarray,
                      images: int = LOOP_IMAGES, n_segments: int = LOOP_SEGMENTS,
                      layers: int = LOOP_LAYERS, normal_axis: int = 1) -> np.ndarray:
    """The periodic solid-angle displacement u = −b Ω_per/(4π) (m, 3), Å, of a circular loop
    of normal ``normal_axis`` (0, 1, 2: x, y, z) in an orthogonal cell (module docstring).

    Parameters
    ----------
    points_A : (m, 3) ndarray
        Where to evaluate, Å.
    centre_A : (3,) ndarray
        Loop centre, Å.
    radius_A : float
        Loop radius, Å.
    burgers_A : (3,) ndarray
        Burgers vector, Å: in the loop's plane for a glide loop, along its normal for a
        prismatic one (any vector is accepted).
    lengths_A : (3,) ndarray
        The orthogonal cell's periods, Å.
    images : int
        In-plane image shells M ((2M+1)² loops per layer, :func:`periodic_solid_angle`).
    n_segments : int
        Polygon vertices on the circle.
    layers : int
        Layers of loops |j| ≤ ``layers`` along the normal.
    normal_axis : int
        The loop plane's normal.

    Crossing the disc along +normal, u jumps by −b (for a prismatic vacancy loop, b = |b| n̂:
    the material on either side moves into the removed slab); elsewhere it is continuous, and
    periodic with the cell.
    """
    S = periodic_solid_angle(points_A, centre_A, radius_A, lengths_A, images, layers,
                             n_segments, normal_axis)
    return -np.outer(S, np.asarray(burgers_A, float)) / (4 * np.pi)


def single_loop_displacement(points_A: np.ndarray, centre_A: np.ndarray, radius_A: float,
                             burgers_A: np.ndarray, n_segments: int = LOOP_SEGMENTS
                             ) -> np.ndarray:
    """u = −b Ω/(4π) (m, 3), Å, of one loop of normal y in infinite space, signed as
    :func:`loop_displacement` (no images; not periodic)."""
    centre = np.asarray(centre_A, float)
    verts = _polygon(centre, float(radius_A), n_segments)
    sigma = np.sign(solid_angle(centre[None] + [0.0, 1e-3 * radius_A, 0.0], centre, verts)[0])
    S = sigma * solid_angle(points_A, centre, verts)
    return -np.outer(S, np.asarray(burgers_A, float)) / (4 * np.pi)


def loop_cell(a0_A: float, size: int, diameter: float, kind: str = "glide",
              images: int = LOOP_IMAGES, n_segments: int = LOOP_SEGMENTS) -> LoopCell:
    """A near-cubic cell of side ≈ ``size`` a0 holding one ½[111] loop of diameter ``diameter``
    a0 (:data:`LOOP_KINDS`), with the periodic solid-angle predictor.

    ``"glide"``: on the (1-10) plane (normal y), b = ½[111] in it; centred in the cell, its
    plane midway between the two atomic (1-10) planes next to the cell's middle; no atom is
    removed. ``"prismatic"``: a vacancy loop on the (111) plane (normal x ∥ b): the sites of the
    three consecutive (111) planes (spacing |b|/3) nearest the centre whose projection on the
    plane lies inside the circle are removed (a slab of thickness |b|, the centre on the middle
    plane), and the field closes the slab. Raises ValueError if the loop does not fit in the
    cell with at least one a0 to spare between it and its images.
    """
    if kind not in LOOP_KINDS:
        raise ValueError(f"unknown loop kind {kind!r}; allowed: {', '.join(LOOP_KINDS)}")
    nx, ny, nz = loop_cell_repeats(size)
    x1, c1 = bcc_loop_unit_cell(a0_A)
    u = np.diag(c1)
    g = np.array([[i, j, k] for i in range(nx) for j in range(ny) for k in range(nz)], float)
    x0 = ((g * u)[:, None, :] + x1[None]).reshape(-1, 3)
    cell = np.diag(u * (nx, ny, nz))
    L = np.diag(cell)
    d_A = float(diameter) * a0_A
    bnorm = a0_A * np.sqrt(3.0) / 2
    b = bnorm * np.array([1.0, 0.0, 0.0])
    normal = 1 if kind == "glide" else 0
    in_plane = [k for k in range(3) if k != normal]
    if d_A + a0_A > min(L[in_plane]):
        raise ValueError(f"a loop of diameter {diameter} a0 does not fit in a cell of "
                         f"{L[in_plane[0]]:.1f} × {L[in_plane[1]]:.1f} Å in its plane with one "
                         f"a0 to spare")
    centre = L / 2
    if kind == "glide":
        spacing = a0_A / np.sqrt(2.0)
        centre[1] = (np.floor(L[1] / 2 / spacing) + 0.5) * spacing
    else:
        spacing = bnorm / 3
        centre[0] = np.round(L[0] / 2 / spacing) * spacing
        rho = np.linalg.norm((x0 - centre)[:, 1:], axis=1)
        inside = (np.abs(x0[:, 0] - centre[0]) < 0.5 * bnorm) & (rho < d_A / 2)
        x0 = x0[~inside]
    disp = loop_displacement(x0, centre, d_A / 2, b, L, images, n_segments,
                             normal_axis=normal)
    return LoopCell(x0, x0 + disp, cell, centre, d_A / 2, b, (nx, ny, nz),
                    tuple([SYMBOL] * len(x0)), kind)


def plane_offset_A(cell: LoopCell, a0_A: float) -> float:
    """Distance (Å) from a loop's plane to the nearest atomic planes left on either side:
    half the (1-10) spacing, a0/(2√2), for the glide loop; 2|b|/3 for the prismatic loop (the
    middle of the three removed (111) planes lies on the loop's plane)."""
    return a0_A / (2 * np.sqrt(2.0)) if cell.kind == "glide" else 2 * np.linalg.norm(
        cell.burgers_A) / 3


def slip_profile(positions0_A: np.ndarray, positions_A: np.ndarray, cell_A: np.ndarray,
                 centre_A: np.ndarray, normal_axis: int, burgers_A: np.ndarray,
                 offset_A: float) -> tuple[np.ndarray, np.ndarray]:
    """The relative displacement across a loop's plane: for each site of the atomic plane
    ``offset_A`` above the plane through ``centre_A`` of normal ``normal_axis``, its
    displacement along b̂ minus the mean of its nearest sites (in projection on the plane,
    periodic) of the plane ``offset_A`` below, Å; and those sites' in-plane coordinates, Å.

    For the predictor of :func:`loop_cell` it is ≈ −|b| inside the loop and ≈ 0 outside.
    Displacements are minimum-image differences of ``positions_A`` and ``positions0_A``.
    """
    from scipy.spatial import cKDTree  # noqa: PLC0415

    x0 = np.asarray(positions0_A, float)
    L = np.diag(np.asarray(cell_A, float))
    d = np.asarray(positions_A, float) - x0
    d -= np.round(d / L) * L
    bhat = np.asarray(burgers_A, float) / np.linalg.norm(burgers_A)
    k = int(normal_axis)
    ip = [a for a in range(3) if a != k]
    h = x0[:, k] - centre_A[k]
    h -= np.round(h / L[k]) * L[k]
    up = np.nonzero(np.abs(h - offset_A) < 1e-3)[0]
    lo = np.nonzero(np.abs(h + offset_A) < 1e-3)[0]
    tree = cKDTree(np.mod(x0[lo][:, ip], L[ip]), boxsize=L[ip])
    dist, idx = tree.query(np.mod(x0[up][:, ip], L[ip]), k=4)
    near = dist <= dist[:, :1] + 1e-6  # all sites at the nearest projected distance
    lower = d[lo] @ bhat
    mean_lower = np.where(near, lower[idx], 0.0).sum(1) / near.sum(1)
    return d[up] @ bhat - mean_lower, x0[up][:, ip]


def slipped_diameter_A(positions0_A: np.ndarray, positions_A: np.ndarray, cell: LoopCell,
                       a0_A: float) -> float:
    """Diameter (Å) of the disc whose area equals the area of the loop's plane where the
    relative displacement (:func:`slip_profile`) exceeds |b|/2 in magnitude: the loop's size in
    a configuration ``positions_A`` of the cell ``cell`` (x₀ ``positions0_A``)."""
    slip, _ = slip_profile(positions0_A, positions_A, cell.cell_A, cell.centre_A,
                           cell.normal_axis, cell.burgers_A, plane_offset_A(cell, a0_A))
    L = np.diag(np.asarray(cell.cell_A, float))
    ip = [a for a in range(3) if a != cell.normal_axis]
    area = L[ip[0]] * L[ip[1]] / len(slip) * np.count_nonzero(
        np.abs(slip) > 0.5 * np.linalg.norm(cell.burgers_A))
    return float(2 * np.sqrt(area / np.pi))


@dataclass(frozen=True)
class LoopSimulation:
    """The loop's simulation cell relaxed with the reference, and the loop's size.

    Attributes
    ----------
    reference : kernels.dislocations.SimulationReference
        x₀, the predictor, ȳ, energies (the input of :func:`kernels.dislocations.predict`).
    kind : str
        :data:`LOOP_KINDS`.
    diameter_a0 : float
        L_D, a0.
    centre_A, burgers_A : (3,) ndarray
        Loop centre and b, Å (what :func:`slipped_diameter_A` needs).
    predictor_diameter_A, relaxed_diameter_A : float
        :func:`slipped_diameter_A` of the predictor and of ȳ, Å.
    """

    reference: dk.SimulationReference
    kind: str
    diameter_a0: float
    centre_A: np.ndarray
    burgers_A: np.ndarray
    predictor_diameter_A: float
    relaxed_diameter_A: float

    def diameter_of_A(self, positions_A: np.ndarray, a0_A: float) -> float:
        """:func:`slipped_diameter_A` of another configuration of the cell (e.g. ȳ_ML), Å."""
        return slipped_diameter_A(self.reference.positions0_A, positions_A, self._cell(),
                                  a0_A)

    def _cell(self) -> LoopCell:
        r = self.reference
        return LoopCell(r.positions0_A, r.predictor_A, r.cell_A, self.centre_A,
                        0.5 * self.diameter_a0, self.burgers_A, (), r.symbols, self.kind)


def simulation_reference(model, a0_A: float, size: int, diameter: float, kind: str,
                         options, lattice: dk.LatticeReference | None = None,
                         images: int = LOOP_IMAGES) -> LoopSimulation:
    """The loop cell (side ≈ ``size`` a0, loop of diameter ``diameter`` a0 and ``kind``)
    relaxed with the reference as :func:`kernels.dislocations.simulation_reference` relaxes the
    straight dislocations' cells (same optimiser and preconditioner rules), and the loop's
    slipped diameter before and after (Å). Its ``reference`` is the input of
    :func:`kernels.dislocations.predict` (with the default system: the same bcc perfect cell and
    stencil)."""
    cell = loop_cell(a0_A, size, diameter, kind, images)
    sym = list(cell.symbols)
    e_pred = model.evaluate(cell.positions_A, cell.cell_A, sym).energy_eV
    r = relax_reference(model, cell.positions_A, cell.cell_A, sym, options)
    precon = reference_preconditioner(model, r.positions_A, cell.cell_A, sym, 3, options,
                                      r.hessian_eV_per_A2)
    sim = dk.SimulationReference(cell.positions0_A, cell.positions_A, r.positions_A,
                                 cell.cell_A, e_pred, r.energy_eV, r.n_steps, tuple(sym), precon)
    return LoopSimulation(sim, kind, float(diameter), cell.centre_A, cell.burgers_A,
                          slipped_diameter_A(cell.positions0_A, cell.positions_A, cell, a0_A),
                          slipped_diameter_A(cell.positions0_A, r.positions_A, cell, a0_A))


def predict(basis: ACEBasis, coeffs: np.ndarray, sim: LoopSimulation,
            lattice: dk.LatticeReference, options, stencil: str = "voronoi"
            ) -> tuple[dk.DislocationPrediction, float]:
    """Relax the loop cell with the fitted model from ȳ and measure the errors exactly as
    :func:`kernels.dislocations.predict` does (geometry error on the stencil of x₀ in the
    reading ``stencil``, energies from each model's value at the predictor); also the loop's
    slipped diameter in ȳ_ML (Å)."""
    t0 = time.perf_counter()
    ref = sim.reference
    model = ACEModel(basis, coeffs)
    sym = list(ref.symbols)
    e_pred_ml = model.evaluate(ref.predictor_A, ref.cell_A, sym).energy_eV
    r = relax_fitted(model, ref.positions_A, ref.cell_A, sym, ref.precon, 3, options)
    x, c, s = dk.bcc_cubic_cell(lattice.a0_A)
    bulk_ml = model.evaluate(x, c, s).energy_eV / len(x)
    p = dk.DislocationPrediction(
        geometry_error_A=geometry_error(ref.positions0_A, ref.positions_A, r.positions_A,
                                        ref.cell_A, dk.W_SCREW.stencil(stencil, lattice.a0_A)),
        energy_error_eV=energy_error(ref.energy_eV, ref.energy_predictor_eV, r.energy_eV,
                                     e_pred_ml),
        formation_energy_error_eV=formation_energy_error(
            ref.energy_eV, lattice.bulk_energy_eV_per_atom, r.energy_eV, bulk_ml, len(sym)),
        relax_steps=r.n_steps, time_s=time.perf_counter() - t0,
        energy_predictor_difference_eV=e_pred_ml - ref.energy_predictor_eV,
        energy_relaxed_difference_eV=r.energy_eV - ref.energy_eV)
    return p, sim.diameter_of_A(r.positions_A, lattice.a0_A)


# ----------------------------------------------------------------------------------------------
# The edge training cell


def edge_cell_repeats(size_a: float) -> tuple[int, int]:
    """Repeats (nx, ny) of the loop unit cell (|b| = a√3/2 along x, a√2 along y) making a
    near-square edge-dipole cell of side ≈ ``size_a`` a0; ny ≥ 2 (two dislocations ≥ a√2
    apart)."""
    return (max(3, int(round(size_a * 2 / np.sqrt(3.0)))),
            max(2, int(round(size_a / np.sqrt(2.0)))))


def w_edge_cell(a0_A: float, size: int, lattice=None, images: int = LOOP_IMAGES) -> LoopCell:
    """A ½[111](1-10) edge dipole in W in a cell of side ≈ ``size`` a0 (x ∥ b, y the glide-plane
    normal), one unit cell (a√6) thick along the line z = [11-2].

    The dipole is the straight limit of the prismatic vacancy loop of :func:`loop_cell`: the
    sites of the three (111) planes (a slab |b| thick, normal x ∥ b) in the strip
    |y − c_y| < h/2 (all z) are removed and the periodic solid-angle field of the strip (a
    rectangle spanning the cell along z, :func:`periodic_solid_angle`) closes it. Its edges —
    opposite signs, h ≈ L_y/2 apart, both ends midway between (1-10) planes — lie on different
    glide planes, so, unlike a dipole on one glide plane (which glides to annihilation in the
    Zhou EAM at every size tried, 96–384 atoms with matscipy's quadrupole builder, and so does
    :mod:`kernels.edge_quadrupole`'s arrangement), it cannot annihilate without climb; it may
    glide to the 45° equilibrium of an edge dipole. ``lattice`` is accepted for the
    :class:`kernels.dislocations.DislocationSystem` interface and unused.
    """
    nx, ny = edge_cell_repeats(size)
    x1, c1 = bcc_loop_unit_cell(a0_A)
    u = np.diag(c1)
    g = np.array([[i, j, 0] for i in range(nx) for j in range(ny)], float)
    x0 = ((g * u)[:, None, :] + x1[None]).reshape(-1, 3)
    cell = np.diag(u * (nx, ny, 1))
    L = np.diag(cell)
    bnorm = a0_A * np.sqrt(3.0) / 2
    spacing = a0_A / np.sqrt(2.0)
    half = max(1, int(round(L[1] / 4 / spacing))) * spacing   # h/2, a whole number of spacings
    centre = np.array([np.round(L[0] / 2 / (bnorm / 3)) * bnorm / 3,
                       (np.floor(L[1] / 2 / spacing) + 0.5) * spacing, L[2] / 2])
    inside = (np.abs(x0[:, 0] - centre[0]) < 0.5 * bnorm) & (np.abs(x0[:, 1] - centre[1]) < half)
    x0 = x0[~inside]
    b = bnorm * np.array([1.0, 0.0, 0.0])
    S = periodic_solid_angle(x0, centre, 0.0, L, images, LOOP_LAYERS, normal_axis=0,
                             half_widths_A=(half, L[2] / 2))
    disp = -np.outer(S, b) / (4 * np.pi)
    return LoopCell(x0, x0 + disp, cell, centre, half, b, (nx, ny, 1),
                    tuple([SYMBOL] * len(x0)), "prismatic")


#: The ½[111](1-10) edge dipole in bcc W (the edge component of the loop's union training set).
W_EDGE = dk.DislocationSystem(name="w-edge", symbol=SYMBOL, perfect_cell=dk.bcc_cubic_cell,
                              cell=w_edge_cell, neighbour_cutoff=dk.nearest_neighbour_cutoff,
                              a0_bracket_A=dk.W_SCREW.a0_bracket_A)


# ----------------------------------------------------------------------------------------------
# The union fit


@dataclass(frozen=True)
class LoopComponent:
    """One training cell of the union: its rows and data (:func:`kernels.dislocations.
    design_rows`, :func:`kernels.dislocations.training_data`) and its W_E, W_F."""

    name: str
    rows: dk.TrainingRows
    data: dk.TrainingData
    weight_energy: float
    weight_forces: float


@dataclass(frozen=True)
class UnionFitResult(dk.FitResult):
    """:class:`kernels.dislocations.FitResult` of a union fit (pooled test RMSEs) plus each
    component's test RMSEs (energy meV/atom, forces eV/Å, virial eV), in the components' order."""

    rmse_energy_by_component_meV_per_atom: tuple = ()
    rmse_forces_by_component_eV_per_A: tuple = ()
    rmse_virial_by_component_eV: tuple = ()


def union_elastic_blocks(rows: dk.TrainingRows, lattice: dk.LatticeReference,
                         weights: dk.Weights, omega_A3: float) -> list:
    """The elastic row blocks (A, y, W) of P2 eq. (4.16) for a Bravais lattice, per atom
    (× Ω_a, eV): ∂²W_cb and the zero stress ∂W_cb (W_V1), ∂³W_cb (W_V2) — the blocks of
    :func:`kernels.dislocations.fit` (weights already in ``weight_form``)."""
    B = rows.n_basis
    blocks = []
    if weights.elastic > 0:
        blocks.append((omega_A3 * rows.elastic.reshape(-1, B),
                       omega_A3 * lattice.elastic_eV_per_A3.reshape(-1), weights.elastic))
        blocks.append((omega_A3 * rows.stress, np.zeros(6), weights.elastic))
    if weights.nonlinear_elastic > 0:
        blocks.append((omega_A3 * rows.nonlinear_elastic.reshape(-1, B),
                       omega_A3 * lattice.nonlinear_elastic_eV_per_A3.reshape(-1),
                       weights.nonlinear_elastic))
    return blocks


def union_system_rows(components: list[LoopComponent], lattice: dk.LatticeReference,
                      weights: dk.Weights, bulk_energy_row: bool = False,
                      energy_weighting: str = DEFAULT_ENERGY_WEIGHTING,
                      weight_form: str = DEFAULT_WEIGHT_FORM) -> tuple[np.ndarray, np.ndarray]:
    """The weighted system (A, y) of a union fit: each component's energy and force rows with
    its own weights (:func:`kernels.point_defects.union_system`), then — once — the perfect
    crystal's energy row (``bulk_energy_row``, weight ``weights.energy``) and the elastic blocks
    (:func:`union_elastic_blocks`; ``weights.elastic``, ``weights.nonlinear_elastic``)."""
    ef = union_system([TrainingComponent(c.name, c.rows, c.data, c.weight_energy,
                                         c.weight_forces) for c in components],
                      0.0, energy_weighting, weight_form)
    first = components[0]
    w = dk.Weights(*(row_weight(x, weight_form) for x in
                     (weights.energy, weights.forces, weights.elastic,
                      weights.nonlinear_elastic)))
    blocks = []
    if bulk_energy_row:
        s = energy_row_scale(first.data.perfect.positions_A.shape[1], energy_weighting)
        blocks.append((first.rows.perfect.energy * s, first.data.perfect.energy_eV * s,
                       w.energy))
    blocks += union_elastic_blocks(first.rows, lattice, w,
                                   dk.volume_per_atom_A3(lattice.a0_A, dk.W_SCREW))
    if not blocks:
        return ef.A, ef.y
    A, y = weighted_system(blocks)
    return np.vstack([ef.A, A]), np.concatenate([ef.y, y])


def fit_union(basis: ACEBasis, components: list[LoopComponent], lattice: dk.LatticeReference,
              weights: dk.Weights, solver: str = "rrqr", rtol: float = 1e-6,
              bulk_energy_row: bool = False, energy_weighting: str = DEFAULT_ENERGY_WEIGHTING,
              weight_form: str = DEFAULT_WEIGHT_FORM) -> UnionFitResult:
    """One fit of P2 eq. (4.16) on the union of several W dislocation training cells.

    ``weights`` gives W_V1, W_V2 (and the bulk row's W_E); each component its own W_E, W_F.
    The elastic rows of the perfect crystal are the same for every component of one basis (they
    do not depend on the training cell), so they enter once, from the first component's rows.
    Test RMSEs pooled over every component's test set and per component; the elastic-constant
    error of the 6×6 C (%).
    """
    if solver not in dk.SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; allowed: {', '.join(dk.SOLVERS)}")
    if not components:
        raise ValueError("a union training set needs at least one component")
    A, y = union_system_rows(components, lattice, weights, bulk_energy_row, energy_weighting,
                             weight_form)
    t0 = time.perf_counter()
    sol = solve_rrqr(A, y, rtol) if solver == "rrqr" else solve_ard(A, y)
    fit_time = time.perf_counter() - t0
    c = sol.coeffs
    model = ACEModel(basis, c)
    de_all, df_all, dv_all, e_r, f_r, v_r = [], [], [], [], [], []
    for comp in components:
        nt = comp.data.test.positions_A.shape[1]
        de = (comp.rows.test.energy @ c - comp.data.test.energy_eV) / nt
        df = (comp.rows.test.forces @ c - comp.data.test.forces_eV_per_A).ravel()
        sym = list(comp.data.symbols) or [SYMBOL] * nt
        vir = np.array([model.evaluate(x, comp.data.cell_A, sym).virial_eV
                        for x in comp.data.test.positions_A])
        dv = (vir - comp.data.test_virial_eV).ravel()
        de_all.append(de), df_all.append(df), dv_all.append(dv)
        e_r.append(1e3 * rmse(de, 0.0)), f_r.append(rmse(df, 0.0)), v_r.append(rmse(dv, 0.0))
    C_ml = components[0].rows.elastic @ c
    C_err = float(100 * np.linalg.norm(C_ml - lattice.elastic_eV_per_A3)
                  / np.linalg.norm(lattice.elastic_eV_per_A3))
    return UnionFitResult(
        coeffs=c, rank=sol.rank, n_basis=components[0].rows.n_basis,
        n_observations=int(A.shape[0]),
        rmse_energy_meV_per_atom=1e3 * rmse(np.concatenate(de_all), 0.0),
        rmse_forces_eV_per_A=rmse(np.concatenate(df_all), 0.0),
        rmse_virial_eV=rmse(np.concatenate(dv_all), 0.0),
        elastic_constant_error_percent=C_err, fit_time_s=fit_time,
        clamped_elastic_constant_error_percent=C_err,
        bulk_energy_observed=bool(bulk_energy_row and weights.energy > 0),
        rmse_energy_by_component_meV_per_atom=tuple(e_r),
        rmse_forces_by_component_eV_per_A=tuple(f_r),
        rmse_virial_by_component_eV=tuple(v_r))
