"""ffmpeg/ffprobe access: probing any video and running ffmpeg with errors that name the file."""
