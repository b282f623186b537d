"""Neural networks: Gemini-GAN generator and discriminator, model files (safetensors + JSON)."""
