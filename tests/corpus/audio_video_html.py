"""Log generated audio (wandb.Audio), a short animation (wandb.Video from frames at
fps=4) and an HTML report (wandb.Html), as wandb's media guide shows them."""
import json

import numpy as np

import mpbackend as wandb

run = wandb.init(project="media-demo", config={"sample_rate": 8000, "frames": 6, "fps": 4})
sr = run.config.sample_rate
t = np.arange(int(0.25 * sr)) / sr
tones = {}
for freq in [220.0, 440.0]:
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    tones[freq] = wave
    wandb.log({"tone": wandb.Audio(wave, sample_rate=sr, caption=f"{freq:.0f} Hz"),
               "freq": freq})

# a bright square moving left to right: (time, channel, height, width), uint8
frames = np.zeros((run.config.frames, 3, 16, 24), dtype=np.uint8)
for i in range(run.config.frames):
    frames[i, :, 4:12, 3 * i:3 * i + 6] = 255
wandb.log({"animation": wandb.Video(frames, fps=run.config.fps, caption="moving square")})

rows = "".join(f"<tr><td>{f:.0f} Hz</td><td>{float(np.abs(w).max()):.2f}</td></tr>"
               for f, w in tones.items())
html = f"<h1>Tone report</h1><table><tr><th>tone</th><th>peak</th></tr>{rows}</table>"
wandb.log({"report": wandb.Html(html)})

out = {"id": run.id, "samples": {str(f): w.tolist()[:50] for f, w in tones.items()},
       "n_samples": len(t), "frames": frames.tolist(), "html": html}
wandb.finish()
print("RESULT " + json.dumps(out))
