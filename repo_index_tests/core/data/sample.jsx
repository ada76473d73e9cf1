import React, { useState } from 'react';

export function Counter({ start = 0 }) {
  const [count, setCount] = useState(start);
  return (
    <div className="counter">
      <span>{count}</span>
      <button onClick={() => setCount(count + 1)}>+1</button>
    </div>
  );
}

export const Greeting = ({ name }) => <h1>Hello, {name}!</h1>;

export default class App extends React.Component {
  render() {
    return (
      <main>
        <Greeting name="world" />
        <Counter start={1} />
      </main>
    );
  }
}
