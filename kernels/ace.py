"""Linear ACE models through python-ace (``pyace``): basis, design-matrix rows, fitted model.

The model is linear in its coefficients, E = Σ_atoms Σ_B c_B B(environment): pyace's
``FinnisSinclairShiftedScaled`` embedding with ``fs_parameters = [1, 1]`` and one density is the
identity, so the energy row of a structure is the sum over atoms of the B-basis projections and the
force rows are pyace's ``forces_bfuncs`` (= −∂ energy row / ∂x) — computed by default by the chain
rule through the atomic basis (:mod:`kernels.ace_gradients`, the same rows to ~1e-14 at a cost
linear instead of quadratic in the basis size; several species too, column blocks per species as
pyace orders them; ``method="pyace"`` keeps pyace's ``compute_b_grad``). ``number_of_functions_per_element``
truncates the superset spanned by ``nradmax_by_orders``/``lmax_by_orders`` to exactly that many
functions when the superset is large enough; the realised size is :attr:`ACEBasis.n_functions`.

pyace's evaluators and calculators are not picklable; the classes here hold only the small
potential-configuration dict (and coefficients) and build pyace objects on the process that uses
them. Keep every pyace object referenced while it is used (temporaries crash pyace).

Units: Å, eV, eV/Å.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .finnis_sinclair import EnergyForcesVirial

__all__ = ["ACEBasis", "ACEModel", "ace_potential_config", "DesignRows", "truncation_rank",
           "periodic_atomic_environment"]


def truncation_rank(key: tuple) -> tuple:
    """Sort key of pyace's truncation of a superset for a function key of
    :meth:`ACEBasis.function_keys`: ``number_of_functions_per_element = N`` keeps the first N
    functions by the "power order" len(ns) + Σ ns + Σ ls (pyace.basisextension.
    sort_funcspecs_list); ties here by body order (rank, ns, ls, LS). Checked, not assumed, by
    :func:`kernels.nested_basis.nested_columns` (measured: every truncation of P1's superset is a
    prefix of this order). Keys of several-species bases carry the neighbour species last
    (a tie-break here)."""
    mu, rank, ns, ls, LS = key[:5]
    return (len(ns) + sum(ns) + sum(ls), mu, rank, ns, ls, LS) + tuple(key[5:])


def _pyace():
    """Import pyace, undoing its change of the root logger's level."""
    root = logging.getLogger()
    level = root.level
    import pyace  # noqa: PLC0415

    root.setLevel(level)
    return pyace


def ace_potential_config(elements: list[str], n_functions: int, cutoff_A: float,
                         nradmax_by_orders: list[int], lmax_by_orders: list[int],
                         radial_basis: str = "SBessel", dcut_A: float = 0.01) -> dict:
    """The pyace potential configuration of a linear ACE basis.

    Parameters
    ----------
    elements : list of str
        Chemical symbols.
    n_functions : int
        Requested number of basis functions per element.
    cutoff_A : float
        Radial cutoff, Å.
    nradmax_by_orders, lmax_by_orders : list of int
        Largest radial index and angular degree per body order (the superset to truncate).
    radial_basis : str
        pyace radial basis ("SBessel", "ChebExpCos", "ChebPow", "ChebLinear").
    dcut_A : float
        Width of the cutoff smoothing, Å.
    """
    if n_functions < 1:
        raise ValueError(f"n_functions must be >= 1, got {n_functions}")
    return {
        "deltaSplineBins": 0.001,
        "elements": list(elements),
        "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1],
                               "ndensity": 1}},
        "bonds": {"ALL": {"radbase": radial_basis, "radparameters": [float(cutoff_A)],
                          "rcut": float(cutoff_A), "dcut": float(dcut_A)}},
        "functions": {"number_of_functions_per_element": int(n_functions),
                      "ALL": {"nradmax_by_orders": list(nradmax_by_orders),
                              "lmax_by_orders": list(lmax_by_orders)}},
    }


@dataclass(frozen=True)
class DesignRows:
    """Unweighted design-matrix rows of a list of structures.

    Attributes
    ----------
    energy : (S, B) ndarray
        Row of the total energy (eV per unit coefficient) of each structure.
    forces : (S, n, k, B) ndarray
        Rows of the k Cartesian force components (eV/Å per unit coefficient) of each atom.
    """

    energy: np.ndarray
    forces: np.ndarray


#: Basis configurations built in this process, by their potential configuration (JSON).
_BASIS_CONFIGURATIONS: dict = {}
#: Function keys of the bases built in this process, by their potential configuration (JSON):
#: a pure function of the configuration, and asking a basis for them otherwise builds its pyace
#: objects (about a second for thousands of functions).
_FUNCTION_KEYS: dict = {}


def _basis_configuration(config: dict):
    """pyace's ``BBasisConfiguration`` of a potential configuration, built once per process.

    Building it means generating and truncating the superset: 0.4 s for one species but ~8 s
    for Ni–Al at 100 functions per element (measured), and every basis, design-row task and
    fitted model of a sweep point needs it. Each :class:`_PyaceObjects` still builds its own
    ``ACEBBasisSet`` from it, so coefficients set on one basis set touch no other.
    """
    import json  # noqa: PLC0415

    key = json.dumps(config, sort_keys=True)
    if key not in _BASIS_CONFIGURATIONS:
        _BASIS_CONFIGURATIONS[key] = _pyace().create_multispecies_basis_config(config)
    return _BASIS_CONFIGURATIONS[key]


class _PyaceObjects:
    """The pyace objects of one basis, kept referenced together (pyace needs that)."""

    def __init__(self, config: dict, coeffs=None):
        pyace = _pyace()
        from pyace.calculator import ACECalculator  # noqa: PLC0415
        from pyace.evaluator import ACEBEvaluator  # noqa: PLC0415

        self.bconf = _basis_configuration(config)
        self.basis = pyace.ACEBBasisSet(self.bconf)
        if coeffs is not None:
            self.basis.basis_coeffs = list(np.asarray(coeffs, float))
        self.evaluator = ACEBEvaluator(self.basis)
        self.calculator = ACECalculator(self.evaluator)
        self.aseatoms_to_atomicenvironment = pyace.aseatoms_to_atomicenvironment


@dataclass(frozen=True)
class ACEBasis:
    """A linear ACE basis given by its pyace potential configuration (picklable).

    Parameters
    ----------
    config : dict
        As made by :func:`ace_potential_config`.
    """

    config: dict
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self):
        return {"config": self.config}

    def __setstate__(self, state):
        object.__setattr__(self, "config", state["config"])
        object.__setattr__(self, "_cache", {})

    def _objects(self) -> "_PyaceObjects":
        """This basis's pyace objects, built once per instance (large supersets take seconds)."""
        if "objs" not in self._cache:
            self._cache["objs"] = _PyaceObjects(self.config)
        return self._cache["objs"]

    @property
    def n_functions(self) -> int:
        """Realised number of basis functions (may be below the requested number)."""
        return len(self._objects().basis.basis_coeffs)

    def function_keys(self) -> list[tuple]:
        """One key per basis function, in column (projection) order: (mu, rank, ns, ls, LS),
        and for several species also the neighbour species mus (without them the keys of e.g.
        Ni–Ni and Ni–Al functions would coincide).

        pyace's truncations of one superset share functions with equal keys, whose columns are
        equal (tests/test_kernels_nested_basis.py); :mod:`kernels.nested_basis` maps by these.
        """
        if "keys" not in self._cache:
            import json  # noqa: PLC0415

            config_key = json.dumps(self.config, sort_keys=True)
            if config_key in _FUNCTION_KEYS:
                self._cache["keys"] = _FUNCTION_KEYS[config_key]
                return list(self._cache["keys"])
            bb = self._objects().basis
            keys = []

            def species(f):
                return (tuple(f.mus),) if bb.nelements > 1 else ()

            for mu in range(bb.nelements):
                keys += [(mu, 1, tuple(f.ns), tuple(f.ls), ()) + species(f)
                         for f in bb.basis_rank1[mu]]
                keys += [(mu, f.rank, tuple(f.ns), tuple(f.ls), tuple(f.LS)) + species(f)
                         for f in bb.basis[mu]]
            self._cache["keys"] = keys
            _FUNCTION_KEYS[config_key] = keys
        return list(self._cache["keys"])

    def release(self) -> None:
        """Drop this instance's pyace objects (rebuilt on next use); cached keys are kept."""
        self._cache.pop("objs", None)
        self._cache.pop("tables", None)

    def _tables(self):
        """Chain-rule tables: one :class:`~kernels.ace_gradients.BasisTables` for one species,
        a list of one per central species (pyace's species order) for several."""
        from .ace_gradients import basis_tables  # noqa: PLC0415

        if "tables" not in self._cache:
            bb = self._objects().basis
            self._cache["tables"] = (basis_tables(bb) if bb.nelements == 1 else
                                     [basis_tables(bb, mu) for mu in range(bb.nelements)])
        return self._cache["tables"]

    def _species_columns(self, symbols: list[str]):
        """Column range (lo, hi) of each atom's species, or None for a one-species basis.

        pyace orders the coefficients (and the global columns of ``forces_bfuncs``) by species
        index (``elements_to_index_map``, alphabetical: Al = 0, Ni = 1), each block rank-1
        functions first; an atom's ``projections`` list only its own species' functions.
        """
        bb = self._objects().basis
        if bb.nelements == 1:
            return None
        sizes = [len(bb.basis_rank1[m]) + len(bb.basis[m]) for m in range(bb.nelements)]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        index = bb.elements_to_index_map
        return [(int(offsets[index[s]]), int(offsets[index[s] + 1])) for s in symbols]

    def design_rows(self, positions_A, cell_A: np.ndarray, symbols: list[str],
                    force_components: int = 3, method: str = "chain_rule",
                    n_threads: int = 1) -> DesignRows:
        """Energy and force rows of structures that share one cell and species list.

        Parameters
        ----------
        positions_A : (S, n, 3) ndarray
            Positions of S structures, Å.
        cell_A : (3, 3) ndarray
            Cell rows, Å (periodic in all directions).
        symbols : list of str
            Chemical symbol of each of the n atoms.
        force_components : int
            Keep the first k Cartesian components of the force rows (2 for the planar lattice,
            whose z rows are exactly zero).
        method : str
            ``"chain_rule"`` (:mod:`kernels.ace_gradients`, the same rows to ~1e-14 at a cost
            linear in the basis size; one species, or several with pyace's per-species column
            blocks) or ``"pyace"`` (pyace's ``compute_b_grad``, cost quadratic in the basis
            size; for several species each atom's energy row placed in its species' block of
            columns).
        n_threads : int
            Threads over structures for ``"chain_rule"`` (numba; default 1, as in the sweep's
            one-thread workers). The rows do not depend on it.
        """
        from ase import Atoms  # noqa: PLC0415

        objs = self._objects()
        positions_A = np.asarray(positions_A, float)
        if method == "chain_rule" and len(set(symbols)) == 1 and objs.basis.nelements == 1:
            from .ace_gradients import design_rows_chain_rule  # noqa: PLC0415

            E, F = design_rows_chain_rule(self._tables(), objs.basis.radial_functions,
                                          positions_A, cell_A, force_components,
                                          n_threads=n_threads)
            return DesignRows(E, F)
        if method == "chain_rule" and objs.basis.nelements > 1:
            from .ace_gradients import design_rows_chain_rule_species  # noqa: PLC0415

            index = objs.basis.elements_to_index_map
            E, F = design_rows_chain_rule_species(
                self._tables(), objs.basis.radial_functions, positions_A, cell_A,
                [index[s] for s in symbols], force_components, n_threads=n_threads)
            return DesignRows(E, F)
        if method not in ("chain_rule", "pyace"):
            raise ValueError(f"unknown method {method!r}")
        S, n = positions_A.shape[:2]
        B = len(objs.basis.basis_coeffs)
        E = np.empty((S, B))
        F = np.empty((S, n, force_components, B))
        columns = self._species_columns(symbols)
        for s in range(S):
            atoms = Atoms(symbols=symbols, positions=positions_A[s], cell=cell_A, pbc=True)
            ae = objs.aseatoms_to_atomicenvironment(
                atoms, cutoff=objs.basis.cutoffmax,
                elements_mapper_dict=objs.basis.elements_to_index_map)
            objs.calculator.compute(ae, compute_projections=True, compute_b_grad=True)
            if columns is None:
                E[s] = np.asarray(objs.calculator.projections).sum(axis=0)
            else:  # an atom's projections cover only its own species' block of columns
                E[s] = 0.0
                for (lo, hi), p in zip(columns, objs.calculator.projections):
                    E[s, lo:hi] += p
            fb = np.asarray(objs.calculator.forces_bfuncs)  # (n, B, 3)
            F[s] = np.moveaxis(fb[:, :, :force_components], 2, 1)
        return DesignRows(E, F)

    def energy_rows(self, positions_A, cell_A: np.ndarray, symbols: list[str]) -> np.ndarray:
        """Energy rows (S, B) only, eV per unit coefficient (for strain derivatives).

        One species: :meth:`design_rows`' energy rows (the same numbers). Several species:
        pyace's projections without ``compute_b_grad``, far cheaper than the force rows.
        """
        objs = self._objects()
        if objs.basis.nelements == 1:
            return self.design_rows(positions_A, cell_A, symbols).energy
        from ase import Atoms  # noqa: PLC0415

        positions_A = np.asarray(positions_A, float)
        columns = self._species_columns(symbols)
        E = np.zeros((positions_A.shape[0], len(objs.basis.basis_coeffs)))
        for s, x in enumerate(positions_A):
            atoms = Atoms(symbols=symbols, positions=x, cell=cell_A, pbc=True)
            ae = objs.aseatoms_to_atomicenvironment(
                atoms, cutoff=objs.basis.cutoffmax,
                elements_mapper_dict=objs.basis.elements_to_index_map)
            objs.calculator.compute(ae, compute_projections=True, compute_b_grad=False)
            for (lo, hi), p in zip(columns, objs.calculator.projections):
                E[s, lo:hi] += p
        return E


def periodic_atomic_environment(positions_A: np.ndarray, cell_A: np.ndarray, types: list[int],
                                cutoff_A: float):
    """pyace's ``ACEAtomicEnvironment`` of a fully periodic cell: the real atoms, one ghost per
    (atom, lattice shift) pair that some atom sees within ``cutoff_A`` (Å), each real atom's
    neighbour indices, and the ghosts' origins (the real atom a ghost's forces fold back to).
    Built from matscipy's linear-time neighbour list."""
    from matscipy.neighbours import neighbour_list  # noqa: PLC0415
    from pyace.catomicenvironment import ACEAtomicEnvironment  # noqa: PLC0415

    x = np.asarray(positions_A, float)
    cell = np.asarray(cell_A, float)
    n = len(x)
    i, j, S = neighbour_list("ijS", positions=x, cell=cell, pbc=[True] * 3, cutoff=cutoff_A)
    ghost = np.any(S != 0, axis=1)
    shifted, which = np.unique(np.column_stack([j[ghost], S[ghost]]), axis=0,
                               return_inverse=True)
    jj = j.copy()
    jj[ghost] = n + which.ravel()
    types = np.asarray(types, int)
    start = np.searchsorted(i, np.arange(n + 1))
    ae = ACEAtomicEnvironment()
    ae.x = np.vstack([x, x[shifted[:, 0]] + shifted[:, 1:] @ cell]).tolist()
    ae.species_type = np.concatenate([types, types[shifted[:, 0]]]).tolist()
    ae.neighbour_list = [jj[start[a]:start[a + 1]].tolist() for a in range(n)]
    ae.origins = list(range(n)) + shifted[:, 0].tolist()
    return ae


@dataclass(frozen=True)
class ACEModel:
    """A fitted linear ACE model: a basis and its coefficients (picklable).

    Energies in eV, forces in eV/Å, virial in eV (−∂E/∂ε).
    """

    basis: ACEBasis
    coeffs: np.ndarray
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self):
        return {"basis": self.basis, "coeffs": self.coeffs}

    def __setstate__(self, state):
        object.__setattr__(self, "basis", state["basis"])
        object.__setattr__(self, "coeffs", state["coeffs"])
        object.__setattr__(self, "_cache", {})

    def ase_calculator(self):
        """A fresh pyace ASE calculator of this model (the fast C-tilde recursive evaluator)."""
        pyace = _pyace()
        objs = _PyaceObjects(self.basis.config, self.coeffs)
        ctilde = objs.basis.to_ACECTildeBasisSet()
        calc = pyace.PyACECalculator(ctilde, recursive_evaluator=True, recursive=True)
        calc._keepalive = (objs, ctilde)
        return calc

    def evaluate(self, positions_A: np.ndarray, cell_A: np.ndarray,
                 symbols: list[str] | None = None) -> EnergyForcesVirial:
        """Energy, forces and virial of one periodic configuration (positions in Å).

        pyace's evaluator runs on an atomic environment built here from matscipy's neighbour
        list (:func:`periodic_atomic_environment`): pyace's own builder grows faster than the
        cell (2.05 s of 2.2 for 6,048 atoms, 57 s for the 24,192-atom P2 cell, 300 functions),
        while the evaluation itself is linear. Same results to rounding (tested)."""
        if "calc" not in self._cache:
            self._cache["calc"] = self.ase_calculator()
        calc = self._cache["calc"]
        x = np.asarray(positions_A, float)
        cell = np.asarray(cell_A, float)
        symbols = symbols or [self.basis.config["elements"][0]] * len(x)
        # the calculator maps element names as bytes (b"Al") to pyace's species indices
        index = {(k.decode() if isinstance(k, bytes) else str(k)): v
                 for k, v in calc.elements_mapper_dict.items()}
        types = [index[s] for s in symbols]
        ace = calc.ace
        ace.compute(periodic_atomic_environment(x, cell, types, calc.cutoff),
                    compute_projections=False)
        # pyace's "virial" (xx, yy, zz, xy, xz, yz) is ase's stress × volume: minus the virial
        v = -np.array(ace.virial)
        virial = np.array([[v[0], v[3], v[4]], [v[3], v[1], v[5]], [v[4], v[5], v[2]]])
        return EnergyForcesVirial(float(ace.energy), np.array(ace.forces, float), virial)
