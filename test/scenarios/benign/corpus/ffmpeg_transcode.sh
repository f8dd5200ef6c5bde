#!/bin/bash
# ffmpeg-transcode: an 8 s 640x360 clip transcoded to H.264 (libx264,
# threads), scaled down, a thumbnail, ffprobe.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-ffmpeg-XXXXXX)
trap 'rm -rf "$d"' EXIT
src=$FIX/media/clip.y4m
ffmpeg -loglevel error -y -i "$src" -c:v libx264 -preset medium -crf 23 "$d/out.mp4"
ffmpeg -loglevel error -y -i "$d/out.mp4" -vf scale=320:-2 -c:v libx264 -preset fast "$d/small.mp4"
ffmpeg -loglevel error -y -ss 2 -i "$d/out.mp4" -frames:v 1 "$d/thumb.png"
ffprobe -loglevel error -show_entries format=duration -of csv=p=0 "$d/out.mp4"
