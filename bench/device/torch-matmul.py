"""The device's own fp32 matmul ceiling (cuBLAS through PyTorch), measured in the same run as the WebGPU engine
so the two numbers come from the same card and the same hour. Prints a table and writes JSON."""
import json, sys, time
import torch

out = sys.argv[1] if len(sys.argv) > 1 else "torch-matmul.json"
rows = []
for allow_tf32 in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    for n in (1024, 2048, 4096):
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        times = []
        for _ in range(7):
            t = time.perf_counter()
            a @ b
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        t = sorted(times)[len(times) // 2]
        rows.append({"n": n, "mode": "tf32" if allow_tf32 else "fp32 exact", "tflops": 2 * n**3 / t / 1e12})
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
for r in rows:
    print(f"  {r['mode']:<10} {r['n']:>5}³  {r['tflops']:7.1f} TFLOP/s")
json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, open(out, "w"), indent=2)
