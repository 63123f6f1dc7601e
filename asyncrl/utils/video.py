"""Headless mp4 videos of an env's rgb_array frames (`asyncrl.enjoy --save_video`), written with
imageio and its ffmpeg (the 'video' extra)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from asyncrl.utils.errors import UserError

INSTALL_HINT = "pip install 'asyncrl[video]'"
DEFAULT_FPS = 30


def check_video_support() -> None:
    """A UserError naming the extra to install when imageio or its ffmpeg is missing."""
    for module, package in (("imageio", "imageio"), ("imageio_ffmpeg", "imageio-ffmpeg")):
        if importlib.util.find_spec(module) is None:
            raise UserError(f"--save_video needs {package}, which is not installed: {INSTALL_HINT}")
    # Frames only: SDL (pygame, which some envs draw with) must not look for a screen or sound
    # card, and MuJoCo renders off-screen with EGL (its default, GLFW, needs a display).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")


def video_path(folder: Path, video_name: str | None) -> Path:
    """`folder/<video_name>.mp4` (replay.mp4 by default)."""
    name = video_name or "replay.mp4"
    if not name.endswith(".mp4"):
        name += ".mp4"
    if Path(name).name != name or name == ".mp4":
        raise UserError(f"--video_name={video_name} must be a file name (the video goes into the "
                        f"experiment folder {folder})")
    return folder / name


def video_fps(fps: int, env: gym.Env) -> int:
    """`--fps`, else the rate the env declares (metadata render_fps), else 30."""
    declared = env.metadata.get("render_fps")
    return fps or (round(declared) if declared else DEFAULT_FPS)


@dataclass
class VideoBudget:
    """The frames recorded so far and how many more are wanted, shared by the recorder of an env
    and that of its replacement (an env that raised is recreated)."""

    max_frames: int  # < 0: the frames of the first episode only
    recorded: int = 0
    over: bool = False
    frames: list[np.ndarray] = field(default_factory=list)  # not yet taken by the writer

    def add(self, frame: np.ndarray) -> None:
        self.frames.append(frame)
        self.recorded += 1
        self.over = self.over or 0 <= self.max_frames <= self.recorded

    def episode_ended(self) -> None:
        self.over = self.over or self.max_frames < 0

    def take(self) -> list[np.ndarray]:
        frames, self.frames = self.frames, []
        return frames


class FrameRecorder(gym.Wrapper):
    """Adds the env's rgb_array frame after every reset and step to `budget` while it wants
    more. The env must be made with render_mode='rgb_array'. A reset's frame is added with the
    next step, so that a video ends with the last step played, not the start of an episode that
    was never played."""

    def __init__(self, env: gym.Env, env_name: str, budget: VideoBudget):
        super().__init__(env)
        if env.render_mode != "rgb_array":
            modes = env.metadata.get("render_modes", [])
            raise UserError(f"--save_video: --env={env_name} made its env with render_mode="
                            f"{env.render_mode}, not rgb_array (the render modes it declares: "
                            f"{', '.join(modes) or 'none'})")
        self.env_name = env_name
        self.budget = budget
        self.checked = False
        self.reset_frame: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        result = self.env.reset(**kwargs)
        self.reset_frame = self._frame()
        return result

    def step(self, action: Any):
        result = self.env.step(action)
        if self.reset_frame is not None and not self.budget.over:
            self.budget.add(self.reset_frame)
        self.reset_frame = None
        if (frame := self._frame()) is not None:
            self.budget.add(frame)
        if np.any(result[2]) or np.any(result[3]):  # lists of flags for a multi-agent env
            self.budget.episode_ended()
        return result

    def _frame(self) -> np.ndarray | None:
        if self.budget.over:
            return None
        if not self.checked:
            self.checked = True
            return self._first_frame()
        return np.asarray(self.env.render())

    def _first_frame(self) -> np.ndarray:
        """The env's first frame, checked: an env that cannot draw one is a one-line error."""
        try:
            frame = self.env.render()
        except Exception as e:  # e.g. gymnasium's DependencyNotInstalled for pygame
            message = (str(e).splitlines() or [""])[0]
            raise UserError(f"--save_video: --env={self.env_name} cannot render a frame "
                            f"({type(e).__name__}: {message}); {INSTALL_HINT} installs pygame, "
                            f"which gymnasium's classic-control envs draw with") from None
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] in (3, 4)):
            raise UserError(f"--save_video: --env={self.env_name} rendered "
                            f"{type(frame).__name__} {getattr(frame, 'shape', '')}, not an "
                            f"rgb_array frame [height, width, 3]")
        return frame


class Mp4Writer:
    """Frames appended one by one to a temporary file beside `path`, renamed to `path` by
    `close(keep=True)`: a video is complete or absent."""

    def __init__(self, path: Path, fps: int):
        self.path = path
        self.fps = fps
        self.partial = path.with_name(f"tmp_{path.name}")
        self.frames = 0
        self._writer: Any = None

    def add(self, frames: list[np.ndarray]) -> None:
        if not frames:
            return
        if self._writer is None:
            import imageio.v2 as imageio

            # H.264 needs even sizes: an odd one is scaled up by a pixel (imageio's default, 16,
            # would rescale most frames).
            self._writer = imageio.get_writer(self.partial, format="FFMPEG", fps=self.fps,
                                              codec="libx264", macro_block_size=2,
                                              ffmpeg_log_level="error")
        for frame in frames:
            self._writer.append_data(np.ascontiguousarray(frame[:, :, :3]))
        self.frames += len(frames)

    def close(self, keep: bool) -> None:
        if self._writer is not None:
            self._writer.close()
        if keep and self.frames:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)
