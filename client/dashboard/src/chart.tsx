// The Live chart: uPlot, fed whole columns at each draw, sized to its box.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

/** Line colours that read on dark and light backgrounds. */
const COLOURS = ["#2e9d5b", "#d08a1c", "#d9443a"];

/** A time chart of `names`' per-second counts; `data` is uPlot's columns. */
export function RateChart({ names, data }: { names: readonly string[]; data: uPlot.AlignedData }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const element = box.current!;
    const chart = new uPlot(
      {
        width: element.clientWidth,
        height: 240,
        series: [{}, ...names.map((label, index) => ({ label, stroke: COLOURS[index], width: 2 }))],
        axes: [
          { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.2)" } },
          { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.2)" }, label: "per second" },
        ],
        legend: { live: false },
        cursor: { show: false },
      },
      data,
      element,
    );
    plot.current = chart;
    const resize = new ResizeObserver(() => chart.setSize({ width: element.clientWidth, height: 240 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
    // Built once; the data arrives through setData below.
  }, []);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  return <div class="chart" ref={box} role="img" aria-label={`Outcomes per second: ${names.join(", ")}`} />;
}
